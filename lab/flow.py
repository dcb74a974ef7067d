"""The `lab` flow: one seed's arms of the ablation lab, each of its training variants an R1-Zero run of
its own (run id `lab-<recipe>-<variant>-seed<N>`) on the seed's base (built once, or shipped, in
`lab-<recipe>-seed<N>`; a variant that changes the world builds its own), every stage a Prefect task,
then the step-0 audit where an arm needs it. Writes bench/results/lab_seed<N>.json; `python -m lab`
runs seeds side by side and judges the arms over all of them (lab/__main__.py).

Arms share the base and nothing else; a finished variant is reused from the run store like any
stage, so an interrupted lab resumes.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.runtime import flow_run

from core.runstore import RunStore
from flows.prefect_tasks import FLOW_OPTIONS, PipelineRun, build, run_log
from lab.arms import AUDIT_K, BY_NAME, COMMON, REFERENCE, variants
from lab.measure import audit, variant_measures
from stages import graph, preflight

RESULTS = Path(__file__).resolve().parent.parent / "bench" / "results"


def seed_file(seed: int, results: Path = RESULTS) -> Path:
    return results / f"lab_seed{seed}.json"


def lab_run_name() -> str:
    """`lab · <recipe> · seed <N>` in the Prefect UI."""
    params = flow_run.parameters
    return f"lab · {Path(str(params.get('recipe', 'pocket'))).stem} · seed {params.get('seed', 0)}"


@flow(name="lab", **(FLOW_OPTIONS | {"flow_run_name": lab_run_name}))
def lab(recipe: str = "pocket", arms: list[str] | None = None, seed: int = 0,
        overrides: list[str] | None = None, results: str | None = None) -> dict[str, Any]:
    """The arms (default: all, lab/arms.py) on one seed of a recipe (configs/ name or path); KEY=VALUE
    overrides apply to every variant; the seed's file goes to `results` (default bench/results/)."""
    unknown = sorted(set(arms or []) - set(BY_NAME))
    if unknown:
        raise ValueError(f"unknown arm(s) {unknown}; arms: {', '.join(BY_NAME)}")
    chosen = [BY_NAME[a] for a in arms or BY_NAME]
    base_overrides = [*(overrides or []), f"seed={seed}"]
    store, log = RunStore(), run_log()
    shared_recipe = preflight.load_checked(recipe, base_overrides)
    name = shared_recipe.name
    shared = PipelineRun(shared_recipe, store, f"lab-{name}-seed{seed}")
    refs = build(shared, [graph.BASE])
    out: dict[str, Any] = {"seed": seed, "recipe": name, "arms": [a.name for a in chosen], "variants": {},
                           "walls": {}}
    for variant in variants(chosen):
        r = preflight.load_checked(recipe, [*base_overrides, *COMMON, *variant.overrides])
        run = PipelineRun(r, store, f"lab-{name}-{variant.name}-seed{seed}")
        given = {graph.TASK_DATA: refs[graph.TASK_DATA]} | ({} if variant.own_base else {graph.BASE: refs[graph.BASE]})
        build(run, ["eval_r1_zero"], given)
        # the stages' walls as built (their manifests): a resumed lab reports the first build's, not the reuse's
        out["walls"][variant.name] = round(sum(m["wall_s"] for m in store.stages(run.run_id)), 1)
        out["variants"][variant.name] = variant_measures(store, run.run_id, r, refs[graph.TASK_DATA])
        log.info("lab seed %d: %s done in %.0f s (test pass@1 %.3f)", seed, variant.name, out["walls"][variant.name],
                 out["variants"][variant.name]["pass_at_1"])
    if any(a.audit for a in chosen):
        t0 = time.perf_counter()
        reference = store.ref(f"lab-{name}-{REFERENCE.name}-seed{seed}", "r1_zero")
        out["audit"] = audit(shared_recipe, refs[graph.TASK_DATA], refs[graph.BASE], reference, AUDIT_K)
        out["walls"]["audit"] = round(time.perf_counter() - t0, 1)
    where = Path(results) if results else RESULTS
    where.mkdir(parents=True, exist_ok=True)
    seed_file(seed, where).write_text(json.dumps(out, indent=1) + "\n")
    return out
