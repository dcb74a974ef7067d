"""The `evaluate` flow: evaluate a run's base and stage adapters on the held-out prompts (pass@1,
cons@k, mean length, language consistency, reflection words) and publish the table and report."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows import tasks as t

ADAPTER_STAGES = ("cold_start", "reasoning_rl", "sft", "all_scenario_rl", "r1_zero")


@flow(name="evaluate", flow_run_name=t.flow_run_name, log_prints=True)
def evaluate(recipe: str = "pocket", overrides: list[str] | None = None, run_id: str | None = None,
             force: list[str] | None = None, stages: list[str] | None = None) -> dict[str, Any]:
    """Evaluate `stages` (default: every finished adapter stage of the run, and the base)."""
    run = t.start(recipe, overrides, run_id, force)

    tasks = t.load_tasks(run)
    base = t.base_model(run, tasks)
    wanted = stages or [s for s in ADAPTER_STAGES if run.store.ref(run.run_id, s) is not None]
    adapters = {"base": None} | {s: run.store.ref(run.run_id, s) for s in wanted if s != "base"}
    missing = [s for s, ref in adapters.items() if s != "base" and ref is None]
    if missing:
        raise ValueError(f"run {run.run_id} has no finished stage {missing}; finished: "
                         f"{[m['stage'] for m in run.store.stages(run.run_id)]}")

    evals = {name: t.evaluate(run, tasks, base, adapter, name) for name, adapter in adapters.items()}
    report = t.report(run, evals)
    return {"run_id": run.run_id, "report": report, "evals": {n: r.to_dict() for n, r in evals.items()}}
