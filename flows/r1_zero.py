"""The `r1-zero` flow: GRPO straight from the base (accuracy + format rewards, no SFT), evaluated
against the base; its report shows the "aha" curves (response length, reflection words)."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.prefect_tasks import FLOW_OPTIONS, run_flow
from stages.graph import FLOWS


@flow(name="r1-zero", **FLOW_OPTIONS)
def r1_zero(recipe: str = "pocket", overrides: list[str] | None = None, run_id: str | None = None,
            force: list[str] | None = None) -> dict[str, Any]:
    """R1-Zero on a recipe; `run_id` resumes (or joins) a run; `force` lists stages to rebuild."""
    return run_flow(FLOWS["r1-zero"], recipe, overrides, run_id, force)
