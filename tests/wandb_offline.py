"""Reading what W&B wrote offline (runs/<run_id>/wandb/offline-run-*/run-*.wandb), for the tracking
tests: the run's identity, config, summary, logged history keys and artifacts."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_BLOCK, _HEADER = 32768, 7  # the .wandb file: a LevelDB-style log of protobuf records after a 7-byte header


def _records(path: Path) -> Iterator[bytes]:
    data = path.read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path}: not a W&B transaction log")
    pos, chunks = _HEADER, []
    while pos + 7 <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < 7:  # block trailer padding
            pos += left
            continue
        length = int.from_bytes(data[pos + 4:pos + 6], "little")
        kind = data[pos + 6]
        if kind == 0 and length == 0:
            break
        chunks.append(data[pos + 7:pos + 7 + length])
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST: a whole record is assembled
            yield b"".join(chunks)
            chunks = []


def read_offline_run(path: Path) -> dict[str, Any]:
    """What W&B recorded in an offline run's .wandb file: the run's identity, config, summary, the
    keys of its logged history, and the artifacts it logged or used."""
    from wandb.proto import wandb_internal_pb2 as pb

    out: dict[str, Any] = {"config": {}, "summary": {}, "history_keys": set(), "logged_artifacts": [],
                           "used_artifacts": [], "exit_code": None}
    for raw in _records(Path(path)):
        record = pb.Record()
        record.ParseFromString(raw)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            r = record.run
            out.update(id=r.run_id, group=r.run_group, job_type=r.job_type, name=r.display_name,
                       project=r.project)
            out["config"].update({u.key: json.loads(u.value_json) for u in r.config.update})
        elif kind == "config":
            out["config"].update({u.key: json.loads(u.value_json) for u in record.config.update})
        elif kind == "summary":
            for u in record.summary.update:
                key = u.key or "/".join(u.nested_key)
                out["summary"][key] = json.loads(u.value_json)
        elif kind == "history":
            out["history_keys"].update(item.key or "/".join(item.nested_key) for item in record.history.item)
        elif kind == "artifact":
            a = record.artifact
            out["logged_artifacts"].append({
                "name": a.name, "type": a.type, "digest": a.digest, "aliases": list(a.aliases),
                "metadata": json.loads(a.metadata) if a.metadata else {},
                "files": [e.path for e in a.manifest.contents]})
        elif kind == "use_artifact":
            out["used_artifacts"].append(record.use_artifact.name)
        elif kind == "exit":
            out["exit_code"] = record.exit.exit_code
    return out


def offline_runs(run_root: Path, wait_s: float = 0) -> list[dict[str, Any]]:
    """Every offline W&B run of a pipeline run (runs/<run_id>/wandb/offline-run-*), oldest first.

    W&B's writer may still be flushing a just-finished run: with `wait_s`, read again until every
    run has its exit record (or the time is up)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            runs = [read_offline_run(f) | {"dir": str(f.parent)}
                    for f in sorted((Path(run_root) / "wandb").glob("offline-run-*/run-*.wandb"))]
            if all(r["exit_code"] is not None for r in runs) or time.monotonic() >= deadline:
                return runs
        except Exception:  # a record cut short mid-write
            if time.monotonic() >= deadline:
                raise
        time.sleep(0.2)
