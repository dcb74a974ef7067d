"""bench/side_by_side.py runs benchmark processes a few at a time, each on cores of its own (never
more processes than cores), echoes their progress lines and reports each exit code; make
bench-paper runs its seeds so."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import prefect.settings
import pytest

from bench import paper
from shell import side_by_side


def job(name: str, tmp_path: Path, code: str) -> side_by_side.Job:
    return side_by_side.Job(name, [sys.executable, "-c", code], tmp_path / name / "out.log")


def test_jobs_run_at_most_parallel_at_a_time(tmp_path):
    # a waits up to `wait` s for b to start: with one slot b cannot start before a ends
    wait_for_b = (f"import pathlib, time\nm = pathlib.Path({str(tmp_path)!r})\nt = time.time()\n"
                  "while time.time() - t < {wait} and not (m / 'b-started').exists(): time.sleep(0.05)\n"
                  "(m / 'a-saw-b').write_text(str((m / 'b-started').exists()))")
    b = f"import pathlib; pathlib.Path({str(tmp_path)!r}, 'b-started').touch()"
    codes = side_by_side.run([job("a", tmp_path, wait_for_b.format(wait=1)), job("b", tmp_path, b)], 1, poll_s=0.05)
    assert codes == {"a": 0, "b": 0}
    assert (tmp_path / "a-saw-b").read_text() == "False"

    (tmp_path / "b-started").unlink()
    side_by_side.run([job("a", tmp_path, wait_for_b.format(wait=30)), job("b", tmp_path, b)], 2, poll_s=0.05)
    assert (tmp_path / "a-saw-b").read_text() == "True"


def test_cores_are_shared_out_exit_codes_reported_and_progress_echoed(tmp_path, capsys):
    say = ("import os; print('noise'); print('step done:', os.environ['OMP_NUM_THREADS'], "
           "sorted(os.sched_getaffinity(0)), flush=True)")
    jobs = [job("ok", tmp_path, say), job("bad", tmp_path, say + "; raise SystemExit(3)")]
    codes = side_by_side.run(jobs, 2, re.compile(r"step done: (.*)"), poll_s=0.05)
    assert codes == {"ok": 0, "bad": 3}
    out = capsys.readouterr().out
    cores = side_by_side.own_cores()
    assert f"[ok] {len(cores) // 2} {cores[0::2]}\n" in out and f"[bad] {len(cores) // 2} {cores[1::2]}\n" in out
    assert "noise" not in out
    assert re.search(r"\[bad\] FAILED \(exit 3\) after [\d.]+ min, log: .*bad/out.log", out)
    assert "noise" in (tmp_path / "ok" / "out.log").read_text()  # the whole output is in the log


def test_never_more_jobs_than_cores_each_pinned_and_threaded_to_its_own(tmp_path, capsys, monkeypatch):
    """A user's OMP_NUM_THREADS would oversubscribe a pinned job: each job's thread count is its cores."""
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    cores = side_by_side.own_cores()
    say = "import os; print('on', os.environ['OMP_NUM_THREADS'], sorted(os.sched_getaffinity(0)), flush=True)"
    n = len(cores) + 1
    side_by_side.run([job(f"j{i}", tmp_path, say) for i in range(n)], n, re.compile(r"on (.*)"), poll_s=0.05)
    out = capsys.readouterr().out
    assert out.count("started on core(s)") == n
    seen = re.findall(r"\[j\d+\] (\d+) \[([\d, ]+)\]", out)
    assert len(seen) == n and all(threads == "1" and len(c.split(",")) == 1 for threads, c in seen)
    assert set(seen) <= {("1", str(c)) for c in cores}


def test_core_groups_split_evenly_and_disjointly():
    assert side_by_side.core_groups([0, 1, 2, 3], 2) == [[0, 2], [1, 3]]
    assert side_by_side.core_groups([0, 1, 2], 3) == [[0], [1], [2]]


def test_parallel_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="parallel must be at least 1"):
        side_by_side.run([job("a", tmp_path, "pass")], 0)


def test_each_bench_seed_is_its_own_process_with_its_own_prefect_home(monkeypatch, tmp_path):
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect"))
    monkeypatch.setenv("R1_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    # no server to share, even when the suite's shared Prefect harness is already up in this process
    with prefect.settings.temporary_settings(restore_defaults={prefect.settings.PREFECT_API_URL}):
        jobs = paper.seed_jobs("configs/pocket-test.yaml", ["eval.samples=2"], [0, 2])
    assert [j.name for j in jobs] == ["seed 0", "seed 2"]
    assert jobs[1].argv[1:] == ["-m", "bench.paper", "--recipe", "configs/pocket-test.yaml", "--seed", "2",
                                "--no-gather", "--set=eval.samples=2"]
    assert jobs[1].env == {"PREFECT_HOME": str(tmp_path / "prefect" / "bench-paper-seed2")}
    assert (tmp_path / "prefect" / "bench-paper-seed2").is_dir()  # Prefect would not create its parent
    assert jobs[1].log.parent.parent == tmp_path / "runs" and jobs[1].log.parent.name.endswith("-seed2")


def test_progress_pattern_finds_built_stages_and_finished_flows():
    built = ("04:28:44.064 | INFO    | Task run 'pocket · bench-paper-pocket-seed0 · r1_zero' - r1_zero: built "
             "v769ff8d95a8c in 678.1 s; prompts 2874, reward_first10 0.278")
    found = [paper.PROGRESS.search(line) for line in (
        built, "[bench-paper seed 0] r1-zero finished in 1159 s",
        "04:35:49.273 | INFO    | Task run 'x · base' - base: reused vdcd56f813fe7 (built 2026-12-02)")]
    assert [next(g for g in m.groups() if g) for m in found[:2]] == [
        "r1_zero: built v769ff8d95a8c in 678.1 s", "r1-zero finished in 1159 s"]
    assert found[2] is None  # reused stages are not news


def test_bench_seeds_share_a_running_prefect_server(monkeypatch):
    with prefect.settings.temporary_settings({prefect.settings.PREFECT_API_URL: "http://127.0.0.1:4999/api"}):
        jobs = paper.seed_jobs("configs/pocket-test.yaml", [], [1])
    assert jobs[0].env == {"PREFECT_API_URL": "http://127.0.0.1:4999/api"}


def test_ctrl_c_leaves_no_job_running(tmp_path, monkeypatch):
    started = []
    real_popen = side_by_side.subprocess.Popen

    def popen(*args, **kwargs):
        started.append(real_popen(*args, **kwargs))
        return started[-1]

    def interrupt(*_):  # Ctrl-C while the job runs
        raise KeyboardInterrupt

    monkeypatch.setattr(side_by_side.subprocess, "Popen", popen)
    monkeypatch.setattr(side_by_side, "_echo", interrupt)
    with pytest.raises(KeyboardInterrupt):
        side_by_side.run([job("a", tmp_path, "import time; time.sleep(60)")], 1, poll_s=0.05)
    assert started and started[0].poll() is not None  # stopped and reaped
