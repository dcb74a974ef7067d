"""The one runner: target stages and every stage they need, in the graph's order, each through the
same checks and the same tracking, for every entry point (the CLI, the Prefect flows, the benches,
`r1 evaluate`, the tests).

    build(targets, recipe, store, run_id, refs=None, force=(), run=in_process) -> {stage: Ref}

Targets are stage names of the graph, evaluations (`eval_<stage>`) or StageSpecs (an evaluation of a
user's model). `run(spec, call)` runs one stage: in this process by default; the Prefect flows pass
one that runs it as a Prefect task (flows/prefect_tasks.py), which is all they add. Every stage
opens its W&B run (core/tracking.py), and as soon as the split prompts and the base's tokenizer both
exist the prompt lengths are checked against the model's context (stages/preflight.py), before
anything trains on them. Each stage runs where the recipe's `distributed:` section places launched
and GPU work (core/devices.py).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from core import devices, tracking
from core.runstore import Ref, RunStore, StageOutcome
from core.stage import StageCall, StageSpec
from stages import graph, preflight

Runner = Callable[[StageSpec, StageCall], StageOutcome]


def in_process(spec: StageSpec, call: StageCall) -> StageOutcome:
    """Run one stage here, in this process."""
    return spec.run(call)


def build(targets: Sequence[str | StageSpec], recipe: Any, store: RunStore, run_id: str,
          refs: Mapping[str, Ref] | None = None, force: Collection[str] = (), run: Runner = in_process
          ) -> dict[str, Ref]:
    """Run the targets and every stage they need with this recipe, in order; stages already in
    `refs` are taken from there; `force` names stages to rebuild ("all": every one). Returns stage
    name -> Ref for all of them."""
    out = dict(refs or {})
    specs = [t if isinstance(t, StageSpec) else graph.spec(t) for t in targets]
    needs = graph.needed([src for s in specs for src in s.inputs_for(recipe).values() if src not in out], recipe)
    for spec in [*needs, *specs]:
        if spec.name in out:
            continue
        inputs = {name: out[src] for name, src in spec.inputs_for(recipe).items()}
        forced = spec.name in force or "all" in force
        call = StageCall(spec, recipe, store, run_id, inputs, force=forced, track=tracking.stage_run)
        # where launched and isolated work runs (the recipe's `distributed:`, core/devices.py): outside
        # every key on purpose, the same processes train the same thing on one machine or several
        with devices.placement(recipe.distributed):
            out[spec.name] = run(spec, call).ref
        check_prompts_once_possible(recipe, spec.name, out)
    return out


def check_prompts_once_possible(recipe: Any, finished: str, refs: Mapping[str, Ref]) -> None:
    """Prompt lengths are checked as soon as the split prompts and the base's tokenizer both exist:
    after the task data for a user's model, after the base stage for the pocket world (whose
    tokenizer that stage builds)."""
    user_model = recipe.model.base != "pocket"
    if (finished == graph.TASK_DATA and user_model) or (finished == graph.BASE and not user_model):
        model = recipe.model.base if user_model else refs[graph.BASE].path
        preflight.check_prompt_lengths(recipe, refs[graph.TASK_DATA], model, recipe.name)
