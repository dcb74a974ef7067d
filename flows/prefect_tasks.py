"""Prefect tasks: the one runner (stages/runner.py) with each stage run as a Prefect task, a thin
wrapper around the stage function; `run_flow` builds a flow's stages and its evaluations that way,
then the report.

Stages hand each other small references (path + hash + version), never models. The run store is
the cache (an unchanged stage is reused) and says whether it built or reused, so Prefect's own task
caching is off. Stages declared with retries (loading task data, evaluating) retry once, but never
on a config or data error: those fail the same way every time. Training steps do not retry: a
failed run is resumed by running the flow again with the same run id. Each stage publishes a
Prefect table artifact with its metrics and output paths.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefect import Task, get_run_logger, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.context import FlowRunContext
from prefect.exceptions import MissingContextError
from prefect.runtime import flow_run

from core.config import Recipe
from core.runstore import Ref, RunStore, StageOutcome
from core.stage import StageCall, StageSpec
from flows.report import HTML, build_report, report_url
from flows.user_errors import quiet_prefect_tracebacks, user_error
from stages import graph, preflight, runner
from stages.evaluation import evaluated_name, format_table, load_results, stage_name

log = logging.getLogger(__name__)
quiet_prefect_tracebacks()  # every flow imports this module, a worker's flow runs included


def run_log() -> logging.Logger | logging.LoggerAdapter:
    """Prefect's logger of the current flow or task run (its lines reach the UI), else this module's."""
    try:
        return get_run_logger()
    except MissingContextError:
        return log


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


def start(recipe: str | Recipe, overrides: list[str] | None, run_id: str | None,
          force: list[str] | None) -> PipelineRun:
    """The run: the recipe (a Recipe the caller already loaded and checked, or a configs/ name or
    path, loaded and checked here before any run directory exists), the given run id (resume) or a
    new one, named in the flow run's name."""
    resolved = recipe if isinstance(recipe, Recipe) else preflight.load_checked(recipe, overrides)
    store = RunStore()
    resumed = bool(run_id and store.stages(run_id))
    run_id = run_id or store.new_run_id(resolved.name)
    run_log().info("%s run %s (recipe %s, store %s)", "resuming" if resumed else "new", run_id, resolved.name,
                   store.root)
    _rename_flow_run(resolved.name, run_id, resumed)
    return PipelineRun(resolved, store, run_id, frozenset(force or []))


def flow_run_name() -> str:
    """`<flow> · <recipe> · <run id>` from the flow's parameters (a new run id is filled in by start())."""
    params = flow_run.parameters
    recipe = params.get("recipe", "pocket")
    name = recipe.name if isinstance(recipe, Recipe) else Path(str(recipe)).stem
    return f"{flow_run.flow_name} · {name} · {params.get('run_id') or 'new run'}"


# What every flow passes to @flow. Prints are not captured as logs (log_prints=False): Prefect's
# capture also took the prints dill makes while it redirects stdout to read a function's bytecode
# (datasets' fingerprinting calls dill.detect), so the disassembly flooded the logs and dill read
# nothing. Progress reaches the logs through run_log() instead: each stage's start and end.
FLOW_OPTIONS: dict[str, Any] = {"flow_run_name": flow_run_name, "log_prints": False}


def _rename_flow_run(recipe: str, run_id: str, resumed: bool) -> None:
    """`<flow> · <recipe> · <run id>`, plus `· resume HH:MM:SS` when the run had finished stages, so
    the runs list tells a resume from the original and resumes from each other."""
    ctx = FlowRunContext.get()
    if ctx is None or ctx.flow_run is None:
        return
    name = f"{ctx.flow.name} · {recipe} · {run_id}"
    if resumed:
        name += f" · resume {dt.datetime.now():%H:%M:%S}"
    try:
        with get_client(sync_client=True) as client:
            client.update_flow_run(ctx.flow_run.id, name=name)
    except Exception as exc:  # a cosmetic step: never fail a run for it
        log.warning("could not rename the flow run: %s", exc)


def not_a_config_error(task: Any, task_run: Any, state: Any) -> bool:
    """Retry unless the failure (or its cause) is a user error (recipe, data, model path, disk):
    retrying cannot fix those."""
    try:
        state.result()
    except Exception as exc:
        return user_error(exc) is None
    return True


def _key(*parts: str) -> str:
    """Prefect artifact keys: lowercase letters, digits and dashes."""
    return re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-")


def publish_stage(store: RunStore, recipe: str, outcome: StageOutcome) -> None:
    """A Prefect table artifact for a stage: its output reference, whether it was reused, and its
    scalar metrics."""
    ref, reused = outcome.ref, outcome.reused
    manifest = store.manifest(ref.run_id, ref.stage) or {}
    rows = [{"field": "output", "value": ref.path}, {"field": "stage dir", "value": str(store.stage_dir(
        ref.run_id, ref.stage))}, {"field": "version", "value": ref.version},
        {"field": "sha256", "value": ref.sha256[:16]}, {"field": "reused", "value": str(reused)},
        {"field": "wall_s", "value": str(manifest.get("wall_s", ""))}]
    for k, v in (manifest.get("metrics") or {}).items():
        if isinstance(v, int | float | str) or v is None:
            rows.append({"field": k, "value": f"{v:.4g}" if isinstance(v, float) else str(v)})
    create_table_artifact(rows, key=_key(recipe, ref.stage),
                          description=f"{ref.stage} of run {ref.run_id} ({'reused' if reused else 'built'})")


NAME = "{recipe} · {call.run_id} · {call.spec.name}"
IO = {"retries": 1, "retry_delay_seconds": 2, "retry_condition_fn": not_a_config_error, "cache_policy": NO_CACHE}
TRAIN = {"retries": 0, "cache_policy": NO_CACHE}


@task(task_run_name=NAME, **TRAIN)
def run_stage(call: StageCall, recipe: str) -> StageOutcome:
    """One stage (of run `recipe`'s): build it in the run store or reuse it, say which, publish its artifact."""
    logger = run_log()
    logger.info("%s: started", call.spec.name)
    outcome = call.spec.run(call)
    logger.info(stage_summary(call.store, outcome))
    publish_stage(call.store, recipe, outcome)
    return outcome


def stage_summary(store: RunStore, outcome: StageOutcome, max_metrics: int = 6) -> str:
    """One log line per finished stage: built or reused, its version, wall time and first metrics."""
    ref = outcome.ref
    manifest = store.manifest(ref.run_id, ref.stage) or {}
    if outcome.reused:
        return f"{ref.stage}: reused v{ref.version} (built {manifest.get('finished_at', '?')})"
    numbers = [(k, v) for k, v in (manifest.get("metrics") or {}).items()
               if isinstance(v, int | float) and not isinstance(v, bool)][:max_metrics]
    metrics = ", ".join(f"{k} {v:.4g}" for k, v in numbers)
    return f"{ref.stage}: built v{ref.version} in {manifest.get('wall_s', 0):.1f} s" + (f"; {metrics}" if metrics else "")


def stage_task(spec: StageSpec) -> Task:
    """The Prefect task of a stage: named after it, retried only where the stage is declared retryable."""
    options = {**IO, "retries": spec.retries} if spec.retries else TRAIN
    return run_stage.with_options(name=spec.name, **options)


def as_tasks(run: PipelineRun) -> runner.Runner:
    """The runner's `run` for a flow: each stage its Prefect task."""
    return lambda spec, call: stage_task(spec)(call, run.name)


def build(run: PipelineRun, targets: list[str], refs: dict[str, Ref] | None = None) -> dict[str, Ref]:
    """The runner on this run, every stage a Prefect task."""
    return runner.build(targets, run.recipe, run.store, run.run_id, refs, run.force, run=as_tasks(run))


def run_flow(flow: graph.Flow, recipe: str | Recipe, overrides: list[str] | None, run_id: str | None,
             force: list[str] | None) -> dict[str, Any]:
    """A flow of the graph: start the run, build its stages and their evaluations, write the report."""
    run = start(recipe, overrides, run_id, force)
    evaluations = [stage_name(s) for s in graph.flow_evaluations(flow, run.recipe)]
    refs = build(run, [*flow.targets, *evaluations])
    evals = {evaluated_name(name): ref for name, ref in refs.items() if name in evaluations}
    report_path = report(run, evals)
    return {"run_id": run.run_id, "report": report_path,
            "refs": {n: r.to_dict() for n, r in refs.items() if n not in evaluations},
            "evals": {n: r.to_dict() for n, r in evals.items()}}


@task(name="report", task_run_name="{run.recipe.name} · {run.run_id} · report", **IO)
def report(run: PipelineRun, evals: dict[str, Ref]) -> str:
    """The eval table across stages and the run report, published as Prefect artifacts; returns the
    path of the report's HTML page."""
    results = {name: load_results(ref) for name, ref in evals.items()}
    if results:
        create_markdown_artifact(f"# Evaluation, run {run.run_id}\n\n{format_table(results)}\n",
                                 key=_key(run.name, "eval"), description=f"evaluation (test split) of run {run.run_id}")
    index = build_report(run.store, run.run_id)
    # An http link: browsers refuse file:// links from a web page. `make serve` serves the reports.
    url = report_url(run.run_id)
    create_link_artifact(url, link_text=f"run report {run.run_id}", key=_key(run.name, "report"),
                         description=f"plots and tables of run {run.run_id} (served by `make serve`; "
                                     f"file: {index.with_name(HTML)})")
    run_log().info("report: %s (file %s)", url, index.with_name(HTML))
    return str(index.with_name(HTML))
