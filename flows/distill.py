"""The `distill` flow: a smaller student SFT'd on the teacher's rejection-sampled data, against the
same student trained by RL alone (the paper: distillation beats RL on small models).

The teacher's dataset comes from the run: with the run id of an r1-pipeline run it is reused;
otherwise the teacher's stages up to rejection sampling are trained first.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows import tasks as t


@flow(name="distill", flow_run_name=t.flow_run_name, log_prints=True)
def distill(recipe: str = "pocket", overrides: list[str] | None = None, run_id: str | None = None,
            force: list[str] | None = None) -> dict[str, Any]:
    """Distil the teacher's reasoning into the recipe's student; `run_id` reuses a teacher run."""
    run = t.start(recipe, overrides, run_id, force)

    tasks = t.load_tasks(run)
    base = t.base_model(run, tasks)
    v1 = t.cold_start(run, tasks, base)
    v2 = t.reasoning_rl(run, tasks, base, v1)
    dataset = t.rejection_sampling(run, tasks, base, v2)     # the teacher's data

    student = t.student_base(run, tasks)
    distilled = t.student_distilled(run, student, dataset)    # SFT on the teacher's data
    rl_only = t.student_rl(run, tasks, student)               # the same student, RL alone

    evals = {name: t.evaluate(run, tasks, student, adapter, name) for name, adapter in
             {"student_base": None, "student_distilled": distilled, "student_rl": rl_only}.items()}
    report = t.report(run, evals)
    return {"run_id": run.run_id, "distilled": distilled.to_dict(), "rl_only": rl_only.to_dict(), "report": report}
