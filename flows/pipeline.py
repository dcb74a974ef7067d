"""The `r1-pipeline` flow: DeepSeek-R1's training recipe (the paper's Figure 2), one task per stage.

    base -> cold start SFT -> reasoning RL -> rejection sampling -> SFT -> all-scenario RL -> merge
                                                                  reward model ----^
then every stage is evaluated on the held-out prompts and the run report is written.

Run it again with the same run id to resume: finished stages are reused from the run store.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows import tasks as t

EVALUATED = ("cold_start", "reasoning_rl", "sft", "all_scenario_rl")


@flow(name="r1-pipeline", flow_run_name=t.flow_run_name, log_prints=True)
def r1_pipeline(recipe: str = "pocket", overrides: list[str] | None = None, run_id: str | None = None,
                force: list[str] | None = None) -> dict[str, Any]:
    """Train DeepSeek-R1's four stages on a recipe (a configs/ name or a path); KEY=VALUE overrides;
    `run_id` resumes a run; `force` lists stages to rebuild ("all" for every one)."""
    run = t.start(recipe, overrides, run_id, force)

    tasks = t.load_tasks(run)
    base = t.base_model(run, tasks)
    v1 = t.cold_start(run, tasks, base)                       # stage 1: cold-start SFT
    v2 = t.reasoning_rl(run, tasks, base, v1)                 # stage 2: reasoning-oriented RL
    dataset = t.rejection_sampling(run, tasks, base, v2)      # stage 3: rejection sampling ...
    v3 = t.sft(run, base, dataset, v2)                        #          ... and SFT
    judge = t.reward_model(run, base)
    v4 = t.all_scenario_rl(run, tasks, base, v3, judge)       # stage 4: RL for all scenarios
    final = t.merge(run, base, v4)

    adapters = {"base": None, "cold_start": v1, "reasoning_rl": v2, "sft": v3, "all_scenario_rl": v4}
    evals = {name: t.evaluate(run, tasks, base, adapter, name) for name, adapter in adapters.items()}
    report = t.report(run, evals)
    return {"run_id": run.run_id, "final": final.to_dict(), "report": report,
            "evals": {name: ref.to_dict() for name, ref in evals.items()}}
