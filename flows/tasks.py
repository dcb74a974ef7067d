"""Prefect tasks: one per stage, each a thin wrapper that calls the stage function and returns its Ref.

Stages hand each other small references (path + hash + version), never models. The run store is
the cache (an unchanged stage is reused), so Prefect's own task caching is off. I/O-ish steps
(loading task data, evaluating) retry once, but never on a config or data error: those fail the same
way every time. Training steps do not retry: a failed run is resumed by running the flow again with
the same run id. Each stage publishes a Prefect table artifact with its metrics and output paths.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefect import task
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from core import preflight
from core.config import Recipe, RecipeError, load_recipe
from core.runstore import Ref, RunStore
from data.sources import DataError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PipelineRun:
    """What every task needs to find its place: the resolved recipe, the run store and the run id."""

    recipe: Recipe
    store: RunStore
    run_id: str
    force: frozenset[str] = field(default_factory=frozenset)

    @property
    def name(self) -> str:
        return self.recipe.name

    def forced(self, stage: str) -> bool:
        return stage in self.force or "all" in self.force


def start(recipe: str, overrides: list[str] | None, run_id: str | None, force: list[str] | None) -> PipelineRun:
    """Load and validate the recipe first (a config error fails here, before any training), then
    take the given run id (resume) or make a new one, and put it in the flow run's name."""
    resolved = load_recipe(recipe, overrides or [])
    preflight.check_recipe(resolved, str(recipe))  # rewards, model paths, causal LM: before a run dir exists
    store = RunStore()
    run_id = run_id or store.new_run_id(resolved.name)
    log.info("run %s (recipe %s, store %s)", run_id, resolved.name, store.root)
    _rename_flow_run(resolved.name, run_id)
    return PipelineRun(resolved, store, run_id, frozenset(force or []))


def flow_run_name() -> str:
    """`<flow> · <recipe> · <run id>` from the flow's parameters (a new run id is filled in by start())."""
    from prefect.runtime import flow_run

    params = flow_run.parameters
    recipe = Path(str(params.get("recipe", "pocket"))).stem
    return f"{flow_run.flow_name} · {recipe} · {params.get('run_id') or 'new run'}"


def _rename_flow_run(recipe: str, run_id: str) -> None:
    from prefect.client.orchestration import get_client
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    if ctx is None or ctx.flow_run is None:
        return
    try:
        with get_client(sync_client=True) as client:
            client.update_flow_run(ctx.flow_run.id, name=f"{ctx.flow.name} · {recipe} · {run_id}")
    except Exception as exc:  # a cosmetic step: never fail a run for it
        log.warning("could not rename the flow run: %s", exc)


def not_a_config_error(task: Any, task_run: Any, state: Any) -> bool:
    """Retry unless the failure (or its cause) is a recipe or data error: retrying cannot fix those."""
    try:
        state.result()
    except Exception as exc:
        err: BaseException | None = exc
        while err is not None:
            if isinstance(err, RecipeError | DataError):
                return False
            err = err.__cause__
    return True


def _key(*parts: str) -> str:
    """Prefect artifact keys: lowercase letters, digits and dashes."""
    return re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-")


def publish_stage(run: PipelineRun, ref: Ref, reused: bool) -> None:
    """A Prefect table artifact for a stage: its output reference and scalar metrics."""
    manifest = run.store.manifest(run.run_id, ref.stage) or {}
    rows = [{"field": "output", "value": ref.path}, {"field": "stage dir", "value": str(run.store.stage_dir(
        run.run_id, ref.stage))}, {"field": "version", "value": ref.version},
        {"field": "sha256", "value": ref.sha256[:16]}, {"field": "reused", "value": str(reused)},
        {"field": "wall_s", "value": str(manifest.get("wall_s", ""))}]
    for k, v in (manifest.get("metrics") or {}).items():
        if isinstance(v, int | float | str) or v is None:
            rows.append({"field": k, "value": f"{v:.4g}" if isinstance(v, float) else str(v)})
    create_table_artifact(rows, key=_key(run.name, ref.stage),
                          description=f"{ref.stage} of run {run.run_id} ({'reused' if reused else 'built'})")


def _stage(run: PipelineRun, stage: str, call: Any) -> Ref:
    """Run one stage function, note whether the run store reused it, and publish its artifact."""
    before = run.store.manifest(run.run_id, stage)
    ref = call(run.forced(stage))
    after = run.store.manifest(run.run_id, stage)
    reused = before is not None and after is not None and before["finished_at"] == after["finished_at"]
    log.info("%s: %s (v%s)", stage, "reused" if reused else "built", ref.version)
    publish_stage(run, ref, reused)
    return ref


NAME = "{run.recipe.name} · {run.run_id} · "
IO = {"retries": 1, "retry_delay_seconds": 2, "retry_condition_fn": not_a_config_error, "cache_policy": NO_CACHE}
TRAIN = {"retries": 0, "cache_policy": NO_CACHE}


@task(name="tasks", task_run_name=NAME + "tasks", **IO)
def load_tasks(run: PipelineRun) -> Ref:
    """Stage 0a: the task data, split into train / held-out."""
    from stages import tasks

    ref = _stage(run, tasks.STAGE, lambda force: tasks.run(run.recipe, run.store, run.run_id, force=force))
    if run.recipe.model.base != "pocket":  # a user's tokenizer exists now; the pocket one after `base`
        preflight.check_prompt_lengths(run.recipe, ref, run.recipe.model.base, run.recipe.name)
    return ref


@task(name="base", task_run_name=NAME + "base", **TRAIN)
def base_model(run: PipelineRun, tasks_ref: Ref) -> Ref:
    """Stage 0b: the base model (the pocket world pretrains its own, cached by content)."""
    from stages import base

    ref = _stage(run, base.STAGE, lambda force: base.run(run.recipe, run.store, run.run_id, tasks_ref, force=force))
    if run.recipe.model.base == "pocket":  # its tokenizer was built by this stage: check before training
        preflight.check_prompt_lengths(run.recipe, tasks_ref, ref.path, run.recipe.name)
    return ref


@task(name="cold_start", task_run_name=NAME + "cold_start", **TRAIN)
def cold_start(run: PipelineRun, tasks_ref: Ref, base_ref: Ref) -> Ref:
    """Stage 1: SFT on readable long chains of thought."""
    from stages import cold_start as stage

    return _stage(run, stage.STAGE,
                  lambda force: stage.run(run.recipe, run.store, run.run_id, tasks_ref, base_ref, force=force))


@task(name="reasoning_rl", task_run_name=NAME + "reasoning_rl", **TRAIN)
def reasoning_rl(run: PipelineRun, tasks_ref: Ref, base_ref: Ref, adapter_ref: Ref) -> Ref:
    """Stage 2: GRPO with accuracy, format and language-consistency rewards."""
    from stages import reasoning_rl as stage

    return _stage(run, stage.STAGE, lambda force: stage.run(run.recipe, run.store, run.run_id, tasks_ref, base_ref,
                                                            adapter_ref, force=force))


@task(name="rejection_sampling", task_run_name=NAME + "rejection_sampling", **TRAIN)
def rejection_sampling(run: PipelineRun, tasks_ref: Ref, base_ref: Ref, adapter_ref: Ref) -> Ref:
    """Stage 3a: sample from the RL adapter, keep the verified, readable answers, mix in general data."""
    from stages import rejection_sampling as stage

    return _stage(run, stage.STAGE, lambda force: stage.run(run.recipe, run.store, run.run_id, tasks_ref, base_ref,
                                                            adapter_ref, force=force))


@task(name="sft", task_run_name=NAME + "sft", **TRAIN)
def sft(run: PipelineRun, base_ref: Ref, dataset_ref: Ref, adapter_ref: Ref) -> Ref:
    """Stage 3b: SFT on the rejection-sampled dataset."""
    from stages import sft as stage

    return _stage(run, stage.STAGE, lambda force: stage.run(run.recipe, run.store, run.run_id, base_ref, dataset_ref,
                                                            adapter_ref, force=force))


@task(name="reward_model", task_run_name=NAME + "reward_model", **TRAIN)
def reward_model(run: PipelineRun, base_ref: Ref) -> Ref:
    """The reward model that judges general (unverifiable) prompts in stage 4."""
    from stages import reward_model as stage

    return _stage(run, stage.STAGE, lambda force: stage.run(run.recipe, run.store, run.run_id, base_ref, force=force))


@task(name="all_scenario_rl", task_run_name=NAME + "all_scenario_rl", **TRAIN)
def all_scenario_rl(run: PipelineRun, tasks_ref: Ref, base_ref: Ref, adapter_ref: Ref, reward_model_ref: Ref) -> Ref:
    """Stage 4: GRPO on mixed prompts, rule rewards plus the reward model, with a reward-hacking guard."""
    from stages import all_scenario_rl as stage

    return _stage(run, stage.STAGE, lambda force: stage.run(run.recipe, run.store, run.run_id, tasks_ref, base_ref,
                                                            adapter_ref, reward_model_ref, force=force))


@task(name="merged", task_run_name=NAME + "merged", **TRAIN)
def merge(run: PipelineRun, base_ref: Ref, adapter_ref: Ref) -> Ref:
    """The final adapter merged into the base: a plain HF model directory."""
    from stages import merge as stage

    return _stage(run, stage.STAGE,
                  lambda force: stage.run(run.recipe, run.store, run.run_id, base_ref, adapter_ref, force=force))


@task(name="r1_zero", task_run_name=NAME + "r1_zero", **TRAIN)
def r1_zero(run: PipelineRun, tasks_ref: Ref, base_ref: Ref) -> Ref:
    """R1-Zero: GRPO straight from the base, accuracy and format rewards only."""
    from stages import r1_zero as stage

    return _stage(run, stage.STAGE,
                  lambda force: stage.run(run.recipe, run.store, run.run_id, tasks_ref, base_ref, force=force))


@task(name="student_base", task_run_name=NAME + "student_base", **TRAIN)
def student_base(run: PipelineRun, tasks_ref: Ref) -> Ref:
    """The smaller student model the teacher's data is distilled into."""
    from stages import distill

    return _stage(run, distill.STUDENT_BASE,
                  lambda force: distill.student_base(run.recipe, run.store, run.run_id, tasks_ref, force=force))


@task(name="student_distilled", task_run_name=NAME + "student_distilled", **TRAIN)
def student_distilled(run: PipelineRun, student_ref: Ref, dataset_ref: Ref) -> Ref:
    """Distillation: SFT of the student on the teacher's rejection-sampled dataset."""
    from stages import distill

    return _stage(run, distill.DISTILLED,
                  lambda force: distill.distilled(run.recipe, run.store, run.run_id, student_ref, dataset_ref,
                                                  force=force))


@task(name="student_rl", task_run_name=NAME + "student_rl", **TRAIN)
def student_rl(run: PipelineRun, tasks_ref: Ref, student_ref: Ref) -> Ref:
    """The comparison: the same student trained by GRPO alone."""
    from stages import distill

    return _stage(run, distill.RL_ONLY,
                  lambda force: distill.rl_only(run.recipe, run.store, run.run_id, tasks_ref, student_ref, force=force))


@task(name="evaluate", task_run_name=NAME + "eval_{name}", **IO)
def evaluate(run: PipelineRun, tasks_ref: Ref, base_ref: Ref, adapter_ref: Ref | None, name: str) -> Ref:
    """Held-out evaluation of the base (adapter None) or a stage's adapter, as stage eval_<name>."""
    from stages import evaluate as stage

    return _stage(run, f"eval_{name}", lambda force: stage.run(run.recipe, run.store, run.run_id, tasks_ref, base_ref,
                                                               adapter_ref, name, force=force))


def eval_results(evals: dict[str, Ref]) -> dict[str, dict[str, Any]]:
    """name -> the eval.json each evaluation wrote."""
    return {name: json.loads((Path(ref.path) / "eval.json").read_text()) for name, ref in evals.items()}


@task(name="report", task_run_name=NAME + "report", **IO)
def report(run: PipelineRun, evals: dict[str, Ref]) -> str:
    """The eval table across stages and the run report, published as Prefect artifacts; returns the
    report's index path."""
    from core.evaluation import format_table
    from core.report import build_report

    results = eval_results(evals)
    if results:
        create_markdown_artifact(f"# Evaluation, run {run.run_id}\n\n{format_table(results)}\n",
                                 key=_key(run.name, "eval"), description=f"held-out evaluation of run {run.run_id}")
    index = build_report(run.store, run.run_id)
    create_link_artifact(index.resolve().as_uri(), link_text=f"run report {run.run_id}", key=_key(run.name, "report"),
                         description=f"plots and tables of run {run.run_id}: {index}")
    log.info("report: %s", index)
    return str(index)
