"""The training flows, one Prefect flow per flow of the stage graph (stages/graph.py `FLOWS`):

    r1-pipeline  DeepSeek-R1's four stages (the paper's Figure 2), every stage evaluated, merged
    r1-zero      GRPO straight from the base, evaluated against it (the "aha" curves)
    distill      the teacher's rejection-sampled data distilled into a smaller student, vs RL alone

Each builds its targets and every stage they need through the one runner (stages/runner.py), then
the evaluations and the run report. They are made from the graph's list, not written out, so the
CLI (`r1 <command>`), these flows and prefect.yaml's deployments (tests/test_flows.py checks it) name
the same flows. Run one again with the same run id to resume: finished stages are reused.
"""

from __future__ import annotations

from typing import Any

from prefect import Flow, flow

from core.config import Recipe
from flows.prefect_tasks import FLOW_OPTIONS, run_flow
from stages import graph


def training_flow(spec: graph.Flow) -> Flow:
    """The Prefect flow of one flow of the graph."""

    def run(recipe: str | Recipe = "pocket", overrides: list[str] | None = None, run_id: str | None = None,
            force: list[str] | None = None) -> dict[str, Any]:
        """`recipe`: a configs/ name or path (or a loaded Recipe); `overrides`: KEY=VALUE; `run_id`
        resumes (or joins) a run; `force` lists stages to rebuild ("all" for every one)."""
        return run_flow(spec, recipe, overrides, run_id, force)

    run.__name__ = run.__qualname__ = spec.entrypoint
    return flow(run, name=spec.name, description=spec.doc, **FLOW_OPTIONS)


FLOWS = {name: training_flow(spec) for name, spec in graph.FLOWS.items()}
# The flows as module attributes: prefect.yaml's entrypoints (flows/training.py:<entrypoint>) name them.
globals().update({spec.entrypoint: FLOWS[name] for name, spec in graph.FLOWS.items()})
