"""The run store: every stage's outputs under runs/<run_id>/<stage>/ with a manifest.json.

A stage is built in a hidden work directory and renamed into place only after its manifest is
written, so a killed or failing stage never leaves a directory that looks finished. A finished
stage is reused when its cache key (config + input hashes + code version) is unchanged and its
files still match the hashes in its manifest. The store says which of the two happened: every
call logs "<run>/<stage>: built" or "<run>/<stage>: reused" and returns a StageOutcome saying so.
Before a build it refuses to start when what the stage will write does not fit on the disk.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import hashlib
import importlib.metadata
import json
import logging
import os
import secrets
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from core import machine, resources
from core.atomic import file_lock, publish_dir, write_json_atomic
from core.layout import CHECKPOINTS, MANIFEST

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TRACKED_PACKAGES = ("torch", "transformers", "trl", "peft", "datasets", "accelerate", "reasoning-gym", "math-verify")


def default_root() -> Path:
    return Path(os.environ.get("R1_RUNS_DIR", PROJECT_ROOT / "runs"))


@dataclass(frozen=True)
class Ref:
    """A small, serialisable reference to a stage's output: what flows hand from stage to stage."""

    run_id: str
    stage: str
    path: str
    sha256: str
    version: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Ref:
        return cls(**{k: data[k] for k in ("run_id", "stage", "path", "sha256", "version")})


@dataclass
class StageResult:
    """What a stage's build function returns: its metrics, and its artifact when that lives
    outside the stage directory (a shared cache, a user's model directory)."""

    metrics: dict[str, Any] = field(default_factory=dict)
    artifact: Path | None = None


@dataclass(frozen=True)
class StageOutcome:
    """What one call of a stage gave: its output reference, and whether the store reused a finished
    stage (True) or built it in this call (False)."""

    ref: Ref
    reused: bool


class StageTracker(Protocol):
    """What a tracking run does with a published stage (core.tracking.StageTracker)."""

    def log_output(self, ref: Ref, metrics: Mapping[str, Any], stage_dir: Path) -> None: ...


# (store root, run id, stage, kind, config, inputs) -> a context manager around one build
Tracker = Callable[[Path, str, str, str, Any, Mapping[str, Ref]], AbstractContextManager[StageTracker]]


class _NoTracker:
    def log_output(self, ref: Ref, metrics: Mapping[str, Any], stage_dir: Path) -> None:
        pass


def _untracked(*_: Any) -> AbstractContextManager[StageTracker]:
    return contextlib.nullcontext(_NoTracker())


class StageError(RuntimeError):
    """A stage failed; its partial work was not published."""


class DiskSpaceError(StageError):
    """Not enough free disk for what a stage will write; the message says where, how much and what to do."""


# --- hashing ---------------------------------------------------------------------------------


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def tree_hashes(root: Path, exclude: tuple[str, ...] = (MANIFEST,)) -> dict[str, str]:
    """sha256 of every file below root, keyed by its relative path."""
    return {
        p.relative_to(root).as_posix(): file_sha256(p)
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.relative_to(root).as_posix() not in exclude
    }


def combine(hashes: Mapping[str, str]) -> str:
    return hashlib.sha256(json.dumps(dict(sorted(hashes.items()))).encode()).hexdigest()


def path_sha256(path: Path) -> str:
    """Content hash of a file or directory; a name that is not a local path (a hub id) hashes as text."""
    if path.is_file():
        return file_sha256(path)
    if path.is_dir():
        return combine(tree_hashes(path))
    return hashlib.sha256(str(path).encode()).hexdigest()


def source_version(files: Iterable[str], root: Path = PROJECT_ROOT) -> str:
    """Hash of the given source files (relative to root): the code part of a cache key."""
    return combine({f: file_sha256(root / f) for f in sorted(set(files))})[:16]


def cache_key(stage: str, config: Any, inputs: Mapping[str, Ref], code: str) -> str:
    """The one cache key: stage name, its resolved config, its inputs' content hashes, its code version."""
    payload = {
        "stage": stage,
        "config": config,
        "inputs": {name: ref.sha256 for name, ref in sorted(inputs.items())},
        "code": code,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


# --- provenance ------------------------------------------------------------------------------


@functools.cache
def git_commit() -> str | None:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=5
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=5,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if head.returncode:
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


@functools.cache
def package_versions() -> dict[str, str]:
    versions = {}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")


def ensure_free_disk(path: str | Path, needs_bytes: int | None, what: str) -> None:
    """Refuse (DiskSpaceError) to build `what` under `path` unless the estimate plus the margin fit
    (the estimates and the R1_DISK_MARGIN margin: core/resources.py)."""
    needs = resources.SMALL_STAGE_BYTES if needs_bytes is None else max(0, int(needs_bytes))
    try:
        margin = resources.margin_bytes()
    except ValueError as exc:
        raise DiskSpaceError(str(exc)) from None
    free = resources.free_bytes(path)
    if free >= needs + margin:
        return
    human, env = resources.human, resources.MARGIN_ENV
    raise DiskSpaceError(
        f"{what}: not enough free disk at {Path(path).resolve()}: {human(free)} ({free} bytes) free, the stage "
        f"writes about {human(needs)} ({needs} bytes) and {env} keeps {human(margin)} free; expected at "
        f"least {human(needs + margin)}. Free space (old runs: `r1 runs`, then remove runs/<id>; unused bases "
        f"in runs/cache), point R1_RUNS_DIR at a larger disk, lower save_total_limit, or lower {env}"
    )


# --- the store -------------------------------------------------------------------------------


class RunStore:
    """runs/<run_id>/<stage>/ directories, a shared content-addressed cache, and their manifests."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else default_root()

    # run ids and paths
    def new_run_id(self, recipe_name: str) -> str:
        """A fresh id; the run directory is created exclusively so two runs never share one."""
        self.root.mkdir(parents=True, exist_ok=True)
        while True:
            stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
            run_id = f"{recipe_name}-{stamp}-{secrets.token_hex(2)}"
            try:
                (self.root / run_id).mkdir()
                return run_id
            except FileExistsError:
                continue

    def stage_dir(self, run_id: str, stage: str) -> Path:
        return self.root / run_id / stage

    def manifest(self, run_id: str, stage: str) -> dict[str, Any] | None:
        """The manifest of a finished stage, or None."""
        path = self.stage_dir(run_id, stage) / MANIFEST
        if not path.is_file():
            return None
        manifest = json.loads(path.read_text(encoding="utf-8"))
        return manifest if manifest.get("status") == "complete" else None

    def ref(self, run_id: str, stage: str) -> Ref | None:
        manifest = self.manifest(run_id, stage)
        return Ref.from_dict(manifest["ref"]) if manifest else None

    def verify(self, manifest: Mapping[str, Any]) -> list[str]:
        """Files whose content no longer matches the manifest (empty when intact)."""
        root = self.stage_dir(manifest["run_id"], manifest["stage"])
        bad = [rel for rel, digest in manifest["outputs"].items()
               if not (root / rel).is_file() or file_sha256(root / rel) != digest]
        artifact = Path(manifest["ref"]["path"])
        if manifest.get("artifact_external") and path_sha256(artifact) != manifest["ref"]["sha256"]:
            bad.append(str(artifact))
        return bad

    def run_stage(
        self,
        run_id: str,
        stage: str,
        config: Any,
        inputs: Mapping[str, Ref],
        build: Callable[[Path], StageResult | None],
        *,
        code: str = "",
        kind: str = "model",
        force: bool = False,
        needs_bytes: int | None = None,
        track: Tracker | None = None,
    ) -> StageOutcome:
        """Build a stage once: reuse it when finished with the same key, else build and publish.

        `build(work_dir)` writes the stage's files into work_dir. Only work_dir/checkpoints/ is
        kept between attempts with the same key, so a trainer can resume from it. `code` is the
        stage's code version, `kind` what it outputs (dataset, model or eval: the W&B artifact
        type; empty: the caller has no code to key). `needs_bytes` estimates what the build writes (core.resources): a build that would
        not fit on the disk is refused before it starts (default: a small margin). `track` opens the
        stage's tracking run around a build (core.tracking.stage_run; default: none). A second
        process asking for the same stage waits on the stage's lock and then reuses what the first
        built.
        """
        key = cache_key(stage, config, inputs, code)
        final = self.stage_dir(run_id, stage)
        with file_lock(final.with_name(f".{stage}.lock")):
            ref = None if force else self.reusable(run_id, stage, key)
            if ref is not None:
                log.info("%s/%s: reused v%s (unchanged: %s)", run_id, stage, ref.version, final)
                return StageOutcome(ref, reused=True)
            work = self.prepare(run_id, stage, key, needs_bytes, force)
            started, t0 = _now(), time.perf_counter()
            with (track or _untracked)(self.root, run_id, stage, kind, config, inputs) as tracker:
                try:
                    result = build(work) or StageResult()
                except Exception as exc:
                    raise StageError(f"{run_id}/{stage} failed: {exc}") from exc
                ref = self.publish(run_id, stage, work, key, result, {
                    "kind": kind, "code_version": code, "config": config,
                    "inputs": {name: r.to_dict() for name, r in inputs.items()}, "started_at": started,
                    "wall_s": round(time.perf_counter() - t0, 3)})
                tracker.log_output(ref, result.metrics, final)
            log.info("%s/%s: built v%s in %.1fs -> %s", run_id, stage, ref.version, time.perf_counter() - t0, final)
            return StageOutcome(ref, reused=False)

    def reusable(self, run_id: str, stage: str, key: str) -> Ref | None:
        """The finished stage's reference when it was built with this key and its files are intact."""
        manifest = self.manifest(run_id, stage)
        if not manifest or manifest["cache_key"] != key:
            return None
        bad = self.verify(manifest)
        if bad:
            log.warning("%s/%s: files changed since written (%s); rebuilding", run_id, stage, bad[:3])
            return None
        return Ref.from_dict(manifest["ref"])

    def prepare(self, run_id: str, stage: str, key: str, needs_bytes: int | None, force: bool) -> Path:
        """The stage's work directory, emptied but for the checkpoints of an attempt with this key
        (none when forced), after checking the disk has room for what it will write."""
        work = self.stage_dir(run_id, stage).with_name(f".{stage}.work")
        ensure_free_disk(self.root, needs_bytes, f"{run_id}/{stage}")
        if work.exists() and (force or _read_text(work / ".key") != key):
            shutil.rmtree(work)
        work.mkdir(parents=True, exist_ok=True)
        for stale in work.iterdir():
            if stale.name != CHECKPOINTS:
                shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
        (work / ".key").write_text(key)
        return work

    def publish(self, run_id: str, stage: str, work: Path, key: str, result: StageResult,
                record: Mapping[str, Any]) -> Ref:
        """Hash what the build wrote, write the manifest (`record` adds what the caller knows: kind,
        code version, config, inputs, timings) and rename the work directory into place."""
        (work / ".key").unlink()
        shutil.rmtree(work / CHECKPOINTS, ignore_errors=True)
        outputs = tree_hashes(work)
        external = result.artifact is not None
        artifact = Path(result.artifact) if external else self.stage_dir(run_id, stage)
        sha = path_sha256(artifact) if external else combine(outputs)
        ref = Ref(run_id=run_id, stage=stage, path=str(artifact), sha256=sha, version=key[:12])
        write_json_atomic(work / MANIFEST, {
            "stage": stage, "run_id": run_id, "status": "complete", "cache_key": key, "ref": ref.to_dict(),
            "artifact_external": external, **record, "outputs": outputs, "metrics": result.metrics,
            "git_commit": git_commit(), "packages": package_versions(), "host": socket.gethostname(),
            "machine": machine.machine(), "finished_at": _now()})
        publish_dir(work, self.stage_dir(run_id, stage))
        return ref

    # shared cache (content-addressed, across runs)
    def cached(self, name: str, key: str) -> bool:
        """Whether runs/cache/<name>/<key> was built to the end."""
        return (self.root / "cache" / name / key / ".complete").is_file()

    def cached_build(self, name: str, key: str, build: Callable[[Path], None]) -> Path:
        """runs/cache/<name>/<key>: built once under a lock, other processes wait and reuse it."""
        final = self.root / "cache" / name / key
        with file_lock(final.with_name(f".{key}.lock")):
            if self.cached(name, key):
                return final
            for stale in final.parent.glob(f".{key}.work-*"):  # a killed builder's leftovers; we hold the lock
                shutil.rmtree(stale, ignore_errors=True)
            work = final.with_name(f".{key}.work-{uuid.uuid4().hex[:8]}")
            work.mkdir(parents=True)
            try:
                build(work)
                (work / ".complete").write_text(_now())
                publish_dir(work, final)
            finally:
                shutil.rmtree(work, ignore_errors=True)
        return final

    # listing
    def runs(self) -> list[dict[str, Any]]:
        """One summary per run: id, finished stages, last update."""
        if not self.root.is_dir():
            return []
        out = []
        for run in sorted(p for p in self.root.iterdir() if p.is_dir() and p.name != "cache"):
            manifests = self.stages(run.name)
            out.append({
                "run_id": run.name,
                "stages": [m["stage"] for m in manifests],
                "updated": max((m["finished_at"] for m in manifests), default="-"),
            })
        return out

    def stages(self, run_id: str) -> list[dict[str, Any]]:
        """Finished stage manifests of a run, oldest first."""
        run = self.root / run_id
        found = [self.manifest(run_id, p.name) for p in run.iterdir() if p.is_dir() and not p.name.startswith(".")] \
            if run.is_dir() else []
        return sorted((m for m in found if m), key=lambda m: m["finished_at"])

    def lineage(self, run_id: str) -> list[str]:
        """Readable lines: each stage, its version and hash, and the references it was built from."""
        lines = []
        for m in self.stages(run_id):
            ref = m["ref"]
            lines.append(f"{m['stage']}  v{ref['version']}  sha256:{ref['sha256'][:12]}  {ref['path']}")
            for name, inp in m["inputs"].items():
                lines.append(f"    <- {name}: {inp['run_id']}/{inp['stage']} v{inp['version']} "
                             f"sha256:{inp['sha256'][:12]}")
        return lines


def _read_text(path: Path) -> str | None:
    return path.read_text() if path.is_file() else None
