"""The `r1-zero` flow: GRPO straight from the base (accuracy + format rewards, no SFT), evaluated
against the base; its report shows the "aha" curves (response length, reflection words)."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows import tasks as t


@flow(name="r1-zero", flow_run_name=t.flow_run_name, log_prints=True)
def r1_zero(recipe: str = "pocket", overrides: list[str] | None = None, run_id: str | None = None,
            force: list[str] | None = None) -> dict[str, Any]:
    """R1-Zero on a recipe; `run_id` resumes (or joins) a run; `force` lists stages to rebuild."""
    run = t.start(recipe, overrides, run_id, force)

    tasks = t.load_tasks(run)
    base = t.base_model(run, tasks)
    zero = t.r1_zero(run, tasks, base)

    evals = {name: t.evaluate(run, tasks, base, adapter, name) for name, adapter in
             {"base": None, "r1_zero": zero}.items()}
    report = t.report(run, evals)
    return {"run_id": run.run_id, "r1_zero": zero.to_dict(), "report": report}
