"""The run store: atomic publication, cache hits and misses, forced reruns, corruption, lineage,
and run ids that concurrent runs never share."""

import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from core.layout import MANIFEST
from core.runstore import Ref, RunStore, StageError, StageResult, cache_key


def writer(text, calls):
    def build(work: Path):
        calls.append(text)
        (work / "out.txt").write_text(text)
        return StageResult(metrics={"chars": len(text)})
    return build


def test_stage_writes_manifest_with_hashes_and_provenance(tmp_path):
    store = RunStore(tmp_path)
    calls = []
    ref = store.run_stage("r1", "sft", {"lr": 1}, {}, writer("hello", calls)).ref
    manifest = json.loads((tmp_path / "r1" / "sft" / MANIFEST).read_text())
    assert manifest["status"] == "complete" and manifest["stage"] == "sft"
    assert manifest["config"] == {"lr": 1} and manifest["metrics"] == {"chars": 5}
    assert set(manifest["outputs"]) == {"out.txt"}
    assert manifest["packages"]["torch"].startswith("2.13")
    assert manifest["started_at"] <= manifest["finished_at"]
    assert Ref.from_dict(manifest["ref"]) == ref and ref.path == str(tmp_path / "r1" / "sft")
    assert not [p for p in (tmp_path / "r1").iterdir() if p.name.startswith(".sft.work")]


def test_cache_hit_miss_and_force(tmp_path):
    store = RunStore(tmp_path)
    calls = []
    a = store.run_stage("r1", "s", {"lr": 1}, {}, writer("x", calls))
    b = store.run_stage("r1", "s", {"lr": 1}, {}, writer("x", calls))
    assert calls == ["x"] and a.ref == b.ref                           # hit: not rebuilt
    assert (a.reused, b.reused) == (False, True)                       # and the store says so
    c = store.run_stage("r1", "s", {"lr": 2}, {}, writer("y", calls)).ref   # config changed: miss
    assert calls == ["x", "y"] and c.version != a.ref.version
    d = store.run_stage("r1", "s", {"lr": 2}, {"prev": c}, writer("y", calls)).ref  # new input: miss
    assert calls == ["x", "y", "y"] and d.version != c.version
    forced = store.run_stage("r1", "s", {"lr": 2}, {"prev": c}, writer("y", calls), force=True)
    assert calls == ["x", "y", "y", "y"] and not forced.reused
    other_code = store.run_stage("r1", "s", {"lr": 2}, {"prev": c}, writer("y", calls), code="another version")
    assert calls == ["x", "y", "y", "y", "y"] and not other_code.reused   # a code change: miss


def test_cache_key_covers_stage_config_inputs_and_code():
    up = Ref("r", "up", "/x", "a" * 64, "v")
    key = cache_key("s", {"lr": 1}, {"up": up}, "code-1")
    assert key == cache_key("s", {"lr": 1}, {"up": Ref("other-run", "up", "/y", "a" * 64, "w")}, "code-1")
    for changed in (cache_key("t", {"lr": 1}, {"up": up}, "code-1"), cache_key("s", {"lr": 2}, {"up": up}, "code-1"),
                    cache_key("s", {"lr": 1}, {"up": Ref("r", "up", "/x", "b" * 64, "v")}, "code-1"),
                    cache_key("s", {"lr": 1}, {"up": up}, "code-2")):
        assert changed != key


def test_input_hash_change_is_a_miss(tmp_path):
    store = RunStore(tmp_path)
    calls = []
    up = Ref("r", "up", "/x", "a" * 64, "v")
    store.run_stage("r1", "s", {}, {"up": up}, writer("x", calls))
    store.run_stage("r1", "s", {}, {"up": Ref("r", "up", "/x", "b" * 64, "v")}, writer("x", calls))
    assert len(calls) == 2


def test_corrupted_output_is_rebuilt_not_reused(tmp_path):
    store = RunStore(tmp_path)
    calls = []
    store.run_stage("r1", "s", {}, {}, writer("x", calls))
    (tmp_path / "r1" / "s" / "out.txt").write_text("tampered")
    store.run_stage("r1", "s", {}, {}, writer("x", calls))
    assert len(calls) == 2 and (tmp_path / "r1" / "s" / "out.txt").read_text() == "x"


def test_failing_stage_publishes_nothing(tmp_path):
    store = RunStore(tmp_path)

    def boom(work):
        (work / "half.bin").write_bytes(b"0" * 10)
        raise RuntimeError("out of cheese")

    with pytest.raises(StageError, match="out of cheese"):
        store.run_stage("r1", "s", {}, {}, boom)
    assert not (tmp_path / "r1" / "s").exists() and store.manifest("r1", "s") is None


KILLED_WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from core.runstore import RunStore
    def build(work):
        (work / "weights.bin").write_bytes(b"1" * 1000)
        Path(sys.argv[2]).write_text("writing")
        time.sleep(60)
    RunStore(sys.argv[1]).run_stage("r1", "s", {}, {}, build)
""")


def test_stage_killed_midway_leaves_no_finished_looking_directory(tmp_path):
    flag = tmp_path / "flag"
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(tmp_path / "runs"), str(flag)],
                            cwd=Path(__file__).parent.parent)
    deadline = time.time() + 60
    while not flag.exists() and time.time() < deadline:
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    store = RunStore(tmp_path / "runs")
    assert not (tmp_path / "runs" / "r1" / "s").exists()
    assert store.manifest("r1", "s") is None and store.stages("r1") == []
    # the next attempt builds cleanly
    calls = []
    store.run_stage("r1", "s", {}, {}, writer("x", calls))
    assert store.manifest("r1", "s")["outputs"].keys() == {"out.txt"}


def test_lineage_and_listing(tmp_path):
    store = RunStore(tmp_path)
    a = store.run_stage("r1", "cold_start", {}, {}, writer("a", [])).ref
    store.run_stage("r1", "reasoning_rl", {}, {"adapter": a}, writer("b", []))
    assert [r["stages"] for r in store.runs()] == [["cold_start", "reasoning_rl"]]
    text = "\n".join(store.lineage("r1"))
    assert "reasoning_rl" in text and f"<- adapter: r1/cold_start v{a.version}" in text


def _new_id(root, queue):
    queue.put(RunStore(root).new_run_id("pocket"))


def test_concurrent_runs_get_distinct_directories(tmp_path):
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_new_id, args=(tmp_path, queue)) for _ in range(6)]
    for p in procs:
        p.start()
    ids = [queue.get(timeout=60) for _ in procs]
    for p in procs:
        p.join()
    assert len(set(ids)) == 6 and all((tmp_path / i).is_dir() for i in ids)


def _cached(root, log):
    def build(out):
        with open(log, "a") as fh:
            fh.write("built\n")
        time.sleep(1)
        (out / "model.bin").write_text("m")
    RunStore(root).cached_build("pocket-base", "k1", build)


def test_shared_cache_is_built_once_while_others_wait(tmp_path):
    ctx = mp.get_context("spawn")
    log = tmp_path / "log"
    procs = [ctx.Process(target=_cached, args=(tmp_path, log)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert log.read_text() == "built\n"
    assert (tmp_path / "cache" / "pocket-base" / "k1" / "model.bin").read_text() == "m"
