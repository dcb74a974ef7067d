"""The `evaluate` flow: evaluate a run's base and stage adapters on the test split (pass@1,
cons@k, mean length, language consistency, reflection words) and publish the table and report."""

from __future__ import annotations

from typing import Any

from prefect import flow

from core.config import Recipe
from flows.prefect_tasks import FLOW_OPTIONS, build, report, start
from stages import graph
from stages.evaluation import stage_name


@flow(name="evaluate", **FLOW_OPTIONS)
def evaluate(recipe: str | Recipe = "pocket", overrides: list[str] | None = None, run_id: str | None = None,
             force: list[str] | None = None, stages: list[str] | None = None) -> dict[str, Any]:
    """Evaluate `stages` (default: every finished evaluated stage of the run built on the base, and the base)."""
    run = start(recipe, overrides, run_id, force)
    candidates = [s for s in graph.evaluated_on(graph.BASE) if s != graph.BASE]
    wanted = [s for s in stages or candidates if s != graph.BASE]
    unknown = sorted(set(wanted) - set(candidates))
    if unknown:
        raise ValueError(f"cannot evaluate {unknown}: evaluated stages on the base are {candidates}")
    finished = {s: run.store.ref(run.run_id, s) for s in wanted}
    if stages is None:
        finished = {s: ref for s, ref in finished.items() if ref is not None}
    missing = [s for s, ref in finished.items() if ref is None]
    if missing:
        raise ValueError(f"run {run.run_id} has no finished stage {missing}; finished: "
                         f"{[m['stage'] for m in run.store.stages(run.run_id)]}")
    names = [graph.BASE, *finished]
    refs = build(run, [stage_name(n) for n in names], finished)
    evals = {n: refs[stage_name(n)] for n in names}
    return {"run_id": run.run_id, "report": report(run, evals), "evals": {n: r.to_dict() for n, r in evals.items()}}
