"""The `distill` flow: a smaller student SFT'd on the teacher's rejection-sampled data, against the
same student trained by RL alone (the paper: distillation beats RL on small models).

The teacher's dataset comes from the run: with the run id of an r1-pipeline run it is reused;
otherwise the teacher's stages up to rejection sampling are trained first. The student's three
models (base, distilled, RL only) are evaluated.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.prefect_tasks import FLOW_OPTIONS, run_flow
from stages.graph import FLOWS


@flow(name="distill", **FLOW_OPTIONS)
def distill(recipe: str = "pocket", overrides: list[str] | None = None, run_id: str | None = None,
            force: list[str] | None = None) -> dict[str, Any]:
    """Distil the teacher's reasoning into the recipe's student; `run_id` reuses a teacher run."""
    return run_flow(FLOWS["distill"], recipe, overrides, run_id, force)
