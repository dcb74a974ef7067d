"""W&B tracking: one W&B run per built stage, grouped by run id, with the stage's output as an artifact.

The run store opens a run around each stage it builds (a reused stage opens none), so TRL's own
logging (`report_to="wandb"`, see `report_to()`) lands in the same run. Runs live under
runs/<run_id>/wandb/ and are offline unless the user sets WANDB_MODE (then `wandb sync` uploads
them). W&B refuses `use_artifact` offline, so every run also records its inputs' artifact names and
digests in run.config; `use_artifact` is called only online, where W&B draws the lineage graph.

Tracking never fails a stage: a W&B error is logged and the stage goes on untracked. `wandb` is
imported where it is used: importing it costs seconds, and most commands track nothing.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from core.atomic import write_json_atomic
from core.layout import EVAL_RESULTS, MANIFEST

log = logging.getLogger(__name__)

PROJECT = "r1-pipeline"
INDEX = "artifacts.json"  # runs/<run_id>/wandb/artifacts.json: stage -> logged artifact (name, digest)
ARTIFACT_TYPES = ("dataset", "model", "eval")


def mode() -> str:
    """W&B mode: offline unless the user chose otherwise (there may be no network)."""
    return os.environ.get("WANDB_MODE", "offline")


def enabled() -> bool:
    return mode() != "disabled" and os.environ.get("R1_TRACKING", "on") != "off"


def log_history(path: Path) -> None:
    """Log a trainer's saved log history into the open W&B run, keys named as TRL's W&B callback
    names them (for training that ran in launched processes, which do not log to W&B themselves)."""
    run = wandb_run()
    if run is None or not path.is_file():
        return
    for entry in json.loads(path.read_text()):
        values = {f"train/{k}": v for k, v in entry.items() if k != "step" and isinstance(v, (int, float))}
        run.log({**values, "train/global_step": entry.get("step", 0)})


def wandb_run() -> Any:
    """The open W&B run of this process, or None (also when wandb is not installed)."""
    try:
        import wandb
    except ImportError:
        return None
    return wandb.run


def report_to() -> str:
    """What trainers pass as `report_to`: "wandb" while a stage's W&B run is open, else "none"."""
    return "wandb" if enabled() and wandb_run() is not None else "none"


def artifact_name(run_id: str, stage: str) -> str:
    """W&B artifact names allow letters, digits, '-', '_' and '.' only."""
    return re.sub(r"[^A-Za-z0-9_.-]", "-", f"{run_id}-{stage}")


def artifact_type(kind: str) -> str:
    """The W&B artifact type of what a stage outputs (its StageSpec.output): base models and adapters
    are both `model`."""
    return kind if kind in ARTIFACT_TYPES else "model"


def read_index(run_root: Path) -> dict[str, Any]:
    path = run_root / "wandb" / INDEX
    return json.loads(path.read_text()) if path.is_file() else {}


def _write_index(run_root: Path, index: dict[str, Any]) -> None:
    (run_root / "wandb").mkdir(parents=True, exist_ok=True)
    write_json_atomic(run_root / "wandb" / INDEX, index)


def input_artifacts(store_root: Path, inputs: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Each input's W&B artifact name, alias and digest (as logged by the stage that made it)."""
    out = {}
    for name, ref in inputs.items():
        logged = read_index(store_root / ref.run_id).get(ref.stage, {})
        out[name] = {
            "artifact": logged.get("name", artifact_name(ref.run_id, ref.stage)),
            "alias": f"key-{ref.version}",
            "digest": logged.get("digest"),
            "sha256": ref.sha256,
        }
    return out


def _scalars(metrics: Mapping[str, Any]) -> dict[str, float | int | str]:
    return {k: v for k, v in metrics.items()
            if isinstance(v, (int, float, str)) and not (isinstance(v, float) and math.isnan(v))}


class StageTracker:
    """The W&B side of one stage build: logs the output reference once the stage is published."""

    def __init__(self, run: Any, store_root: Path, kind: str = "model"):
        self.run, self.store_root, self.kind = run, store_root, kind

    def log_output(self, ref: Any, metrics: Mapping[str, Any], stage_dir: Path) -> None:
        """Stage metrics into the run summary; the output as an artifact (sha256 + version in metadata)."""
        if self.run is None:
            return
        try:
            import wandb

            self.run.summary.update({f"stage/{k}": v for k, v in _scalars(metrics).items()})
            artifact = wandb.Artifact(
                artifact_name(ref.run_id, ref.stage), type=artifact_type(self.kind),
                description=f"{ref.stage} of run {ref.run_id}",
                metadata={"sha256": ref.sha256, "version": ref.version, "path": ref.path, "stage": ref.stage,
                          "run_id": ref.run_id},
            )
            # The manifest is small and names every output file with its sha256, so the artifact's
            # digest follows the content; the (possibly large) output itself is a reference, not a copy.
            artifact.add_file(str(stage_dir / MANIFEST), name=MANIFEST)
            if (stage_dir / EVAL_RESULTS).is_file():
                artifact.add_file(str(stage_dir / EVAL_RESULTS), name=EVAL_RESULTS)
            artifact.add_reference(Path(ref.path).resolve().as_uri(), name="output", checksum=False)
            logged = self.run.log_artifact(artifact, aliases=["latest", f"key-{ref.version}"])
            if mode() != "offline":
                logged.wait()
            run_root = self.store_root / ref.run_id
            index = read_index(run_root)
            index[ref.stage] = {"name": artifact.name.split(":")[0], "type": artifact.type,
                                "digest": artifact.digest, "sha256": ref.sha256, "version": ref.version,
                                "wandb_run": self.run.id}
            _write_index(run_root, index)
        except Exception as exc:  # tracking must never cost a finished stage
            log.warning("W&B: could not log the %s artifact: %s", ref.stage, exc)


@contextlib.contextmanager
def stage_run(store_root: Path, run_id: str, stage: str, kind: str, config: Any,
              inputs: Mapping[str, Any]) -> Iterator[StageTracker]:
    """A W&B run for one stage build: group = run id, job_type = stage, the resolved config attached;
    `kind` is what the stage outputs (its artifact's type)."""
    if not enabled():
        yield StageTracker(None, store_root, kind)
        return
    run = None
    try:
        import wandb

        run_root = store_root / run_id
        run_root.mkdir(parents=True, exist_ok=True)
        artifacts = input_artifacts(store_root, inputs)
        run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", PROJECT), group=run_id, job_type=stage,
            name=f"{run_id}/{stage}", dir=str(run_root), mode=mode(), reinit="finish_previous",
            config={"stage": stage, "run_id": run_id, "stage_config": config,
                    "inputs": {k: r.to_dict() for k, r in inputs.items()}, "input_artifacts": artifacts},
            settings=wandb.Settings(silent=True, x_disable_stats=True, console="off"),
        )
        if mode() == "online":
            for art in artifacts.values():
                run.use_artifact(f"{art['artifact']}:{art['alias']}")
    except Exception as exc:
        log.warning("W&B: could not start a run for %s/%s, continuing untracked: %s", run_id, stage, exc)
        run = None
    failed = True
    try:
        yield StageTracker(run, store_root, kind)
        failed = False
    finally:
        if run is not None:
            try:
                run.finish(exit_code=1 if failed else 0)
            except Exception as exc:
                log.warning("W&B: could not finish the run of %s/%s: %s", run_id, stage, exc)
