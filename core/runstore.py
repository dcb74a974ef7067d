"""The run store: every stage's outputs under runs/<run_id>/<stage>/ with a manifest.json.

A stage is built in a hidden work directory and renamed into place only after its manifest is
written, so a killed or failing stage never leaves a directory that looks finished. A finished
stage is reused when its cache key (config + input hashes + code version) is unchanged and its
files still match the hashes in its manifest.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
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
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from core import tracking

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CODE_PACKAGES = ("core", "data", "stages", "rewards")
TRACKED_PACKAGES = ("torch", "transformers", "trl", "peft", "datasets", "accelerate", "reasoning-gym", "math-verify")
MANIFEST = "manifest.json"
# The one part of a work directory that survives a killed attempt: trainer checkpoints to resume
# from. Everything else is wiped before a new attempt, and this is dropped once the stage is done.
CHECKPOINTS = "checkpoints"


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


class StageError(RuntimeError):
    """A stage failed; its partial work was not published."""


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


@functools.cache
def code_version() -> str:
    """Hash of the project's own source: any code change invalidates cached stages."""
    hashes = {}
    for pkg in CODE_PACKAGES:
        for p in sorted((PROJECT_ROOT / pkg).rglob("*.py")):
            hashes[p.relative_to(PROJECT_ROOT).as_posix()] = file_sha256(p)
    return combine(hashes)[:16]


def cache_key(stage: str, config: Any, inputs: Mapping[str, Ref]) -> str:
    payload = {
        "stage": stage,
        "config": config,
        "inputs": {name: ref.sha256 for name, ref in sorted(inputs.items())},
        "code": code_version(),
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


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON so that readers see the old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, sort_keys=True, default=str)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock; a second process waits here until the first is done."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _publish(work: Path, final: Path) -> None:
    """Swap a finished work directory into place; the old one (a forced rerun) goes last."""
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:8]}")
        os.rename(final, old)
    os.rename(work, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


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
        force: bool = False,
        needs_bytes: int | None = None,
    ) -> Ref:
        """Build a stage once: reuse it when finished with the same key, else build and publish.

        `build(work_dir)` writes the stage's files into work_dir. Only work_dir/checkpoints/ is
        kept between attempts with the same key, so a trainer can resume from it. `needs_bytes`
        estimates what the build writes (core.resources): a build that would not fit on the disk
        is refused before it starts (default: a small margin).
        """
        key = cache_key(stage, config, inputs)
        final = self.stage_dir(run_id, stage)
        work = final.with_name(f".{stage}.work")
        with file_lock(final.with_name(f".{stage}.lock")):
            manifest = self.manifest(run_id, stage)
            if manifest and manifest["cache_key"] == key and not force:
                bad = self.verify(manifest)
                if not bad:
                    log.info("%s/%s: unchanged, reusing %s", run_id, stage, final)
                    return Ref.from_dict(manifest["ref"])
                log.warning("%s/%s: files changed since written (%s); rebuilding", run_id, stage, bad[:3])
            from core.resources import ensure_free_disk  # imported here: resources imports this module

            ensure_free_disk(self.root, needs_bytes, f"{run_id}/{stage}")
            if work.exists() and (force or _read_text(work / ".key") != key):
                shutil.rmtree(work)
            work.mkdir(parents=True, exist_ok=True)
            for stale in work.iterdir():
                if stale.name != CHECKPOINTS:
                    shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
            (work / ".key").write_text(key)
            started, t0 = _now(), time.perf_counter()
            # One W&B run per built stage (a reused stage returned above and opens none).
            with tracking.stage_run(self.root, run_id, stage, config, inputs) as tracked:
                try:
                    result = build(work) or StageResult()
                except Exception as exc:
                    raise StageError(f"{run_id}/{stage} failed: {exc}") from exc
                (work / ".key").unlink()
                shutil.rmtree(work / CHECKPOINTS, ignore_errors=True)
                outputs = tree_hashes(work)
                external = result.artifact is not None
                artifact = Path(result.artifact) if external else final
                sha = path_sha256(artifact) if external else combine(outputs)
                ref = Ref(run_id=run_id, stage=stage, path=str(artifact), sha256=sha, version=key[:12])
                write_json_atomic(work / MANIFEST, {
                    "stage": stage,
                    "run_id": run_id,
                    "status": "complete",
                    "cache_key": key,
                    "code_version": code_version(),
                    "ref": ref.to_dict(),
                    "artifact_external": external,
                    "config": config,
                    "inputs": {name: r.to_dict() for name, r in inputs.items()},
                    "outputs": outputs,
                    "metrics": result.metrics,
                    "git_commit": git_commit(),
                    "packages": package_versions(),
                    "host": socket.gethostname(),
                    "started_at": started,
                    "finished_at": _now(),
                    "wall_s": round(time.perf_counter() - t0, 3),
                })
                _publish(work, final)
                tracked.log_output(ref, result.metrics, final)
            log.info("%s/%s: done in %.1fs -> %s", run_id, stage, time.perf_counter() - t0, final)
            return ref

    # shared cache (content-addressed, across runs)
    def cached_build(self, name: str, key: str, build: Callable[[Path], None]) -> Path:
        """runs/cache/<name>/<key>: built once under a lock, other processes wait and reuse it."""
        final = self.root / "cache" / name / key
        with file_lock(final.with_name(f".{key}.lock")):
            if (final / ".complete").is_file():
                return final
            for stale in final.parent.glob(f".{key}.work-*"):  # a killed builder's leftovers; we hold the lock
                shutil.rmtree(stale, ignore_errors=True)
            work = final.with_name(f".{key}.work-{uuid.uuid4().hex[:8]}")
            work.mkdir(parents=True)
            try:
                build(work)
                (work / ".complete").write_text(_now())
                _publish(work, final)
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
