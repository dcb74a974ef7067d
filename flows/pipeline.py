"""The `r1-pipeline` flow: DeepSeek-R1's training recipe (the paper's Figure 2), one task per stage.

    base -> cold start SFT -> reasoning RL -> rejection sampling -> SFT -> all-scenario RL -> merge
                                                                  reward model ----^
then every stage is evaluated on the held-out prompts and the run report is written. The stages,
their inputs and which are evaluated come from the stage graph (stages/graph.py).

Run it again with the same run id to resume: finished stages are reused from the run store.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.prefect_tasks import FLOW_OPTIONS, run_flow
from stages.graph import FLOWS


@flow(name="r1-pipeline", **FLOW_OPTIONS)
def r1_pipeline(recipe: str = "pocket", overrides: list[str] | None = None, run_id: str | None = None,
                force: list[str] | None = None) -> dict[str, Any]:
    """Train DeepSeek-R1's four stages on a recipe (a configs/ name or a path); KEY=VALUE overrides;
    `run_id` resumes a run; `force` lists stages to rebuild ("all" for every one)."""
    return run_flow(FLOWS["r1-pipeline"], recipe, overrides, run_id, force)
