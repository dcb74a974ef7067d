"""Crash and resume: the real CLI pipeline killed with SIGKILL at the worst moments, then run again
with the same run id. Finished stages must be reused untouched, the reasoning-RL stage must resume
from its last complete trainer checkpoint, and no directory that looks finished may be corrupt.

One run id goes through five processes (one Prefect start each, so they share the work):
  A  killed in reasoning_rl once checkpoint-6 is saved (then a torn checkpoint-7 is planted, as a
     kill in the middle of a checkpoint write leaves it);
  B  killed the moment the next checkpoint directory appears (a real kill during a checkpoint write);
  C  killed the moment the rejection-sampling dataset starts being written (an artifact write);
  D  killed after a random delay (seeded, printed), wherever that lands;
  E  runs to the end.
After each kill every visible stage directory must verify against its manifest.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import SOURCES

from core.layout import MANIFEST
from core.runstore import RunStore

ROOT = Path(__file__).resolve().parent.parent
# The pipelines run from a snapshot of the source: a stage's cache key includes the code's hash, so
# an edit to the working tree between two of the processes would (rightly) rebuild every stage.
RL_STEPS, SAVE_STEPS, SAVE_LIMIT = 12, 2, 2
# reasoning_rl long enough to kill in the middle; a cheaper reward model keeps the test short
OVERRIDES = [f"reasoning_rl.steps={RL_STEPS}", f"reasoning_rl.save_steps={SAVE_STEPS}",
             f"reasoning_rl.save_total_limit={SAVE_LIMIT}", "reward_model.steps=10"]
MARKER = "R1_TEST_PIPELINE"  # an env var naming this module's processes, so teardown finds strays


class Pipeline:
    """`r1 pipeline` in its own process group, output to a log file; killed (group) on exit."""

    def __init__(self, env: dict[str, str], src: Path, run_id: str, log: Path):
        recipe = src / "configs" / "pocket-test.yaml"
        args = [sys.executable, "-m", "shell.cli", "pipeline", "--recipe", str(recipe), "--run-id", run_id]
        for o in OVERRIDES:
            args += ["--set", o]
        self.log = log
        self.started = time.monotonic()
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(args, cwd=src, env=env, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)

    def tail(self, n: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-n:]

    def wait_for(self, what: str, ready: Callable[[], bool], timeout: float = 240, poll: float = 0.02) -> None:
        """Poll until ready() (poll=0: spin, to catch a write that lasts milliseconds)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():
                return
            if self.proc.poll() is not None:
                pytest.fail(f"pipeline exited ({self.proc.returncode}) before {what}:\n{self.tail()}")
            time.sleep(poll)
        pytest.fail(f"timed out waiting for {what}:\n{self.tail()}")

    def kill(self) -> float:
        """SIGKILL the whole process group (CLI, temporary Prefect server, W&B writers)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        return time.monotonic() - self.started

    def finish(self, timeout: float = 420) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"pipeline did not finish in {timeout}s:\n{self.tail()}")


def _kill_strays(marker: str) -> list[str]:
    """Processes of ours that left their group (none expected): found by our env marker, killed by pid."""
    import psutil

    killed = []
    for proc in psutil.process_iter():
        try:
            if proc.pid != os.getpid() and proc.environ().get(MARKER) == marker:
                killed.append(" ".join(proc.cmdline())[:120])
                proc.kill()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return killed


@pytest.fixture
def pipeline(pocket_run, tmp_path):
    """Start pipelines on the session store (its pocket base is cached); all are killed at teardown."""
    store = pocket_run[0]
    marker = uuid.uuid4().hex
    src = tmp_path / "src"
    for name in SOURCES:
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env.update({"PYTHONPATH": str(src), "R1_RUNS_DIR": str(store.root), "PREFECT_HOME": str(tmp_path / "prefect"),
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline",
                "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", MARKER: marker})
    started: list[Pipeline] = []

    def start(run_id: str) -> Pipeline:
        p = Pipeline(env, src, run_id, tmp_path / f"pipeline-{len(started)}.log")
        started.append(p)
        return p

    yield store, start
    for p in started:
        if p.proc.poll() is None:
            p.kill()
    strays = _kill_strays(marker)
    assert not strays, f"processes outlived their killed process group: {strays}"


# --- what must hold after every kill -----------------------------------------------------------


def finished(store: RunStore, run_id: str) -> dict[str, dict]:
    return {m["stage"]: m for m in store.stages(run_id)}


def assert_nothing_corrupt(store: RunStore, run_id: str) -> dict[str, dict]:
    """Every visible stage directory has a complete manifest whose hashes match its files."""
    run = store.root / run_id
    visible = [p for p in run.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name not in
               ("wandb", "report")]
    for stage_dir in visible:
        manifest = store.manifest(run_id, stage_dir.name)
        assert manifest is not None, f"{stage_dir} looks finished but has no complete {MANIFEST}"
        assert store.verify(manifest) == [], f"{stage_dir}: files differ from the manifest"
    return finished(store, run_id)


def assert_untouched(before: dict[str, dict], after: dict[str, dict]) -> None:
    """A stage finished by an earlier process is reused as it was (same finish time, same hashes)."""
    for stage, m in before.items():
        assert stage in after, f"{stage} disappeared"
        assert after[stage]["finished_at"] == m["finished_at"], f"{stage} was rebuilt"
        assert after[stage]["outputs"] == m["outputs"]


def checkpoints(store: RunStore, run_id: str, stage: str = "reasoning_rl") -> dict[int, bool]:
    """checkpoint number -> complete (its trainer_state.json, written last, is readable)."""
    folder = store.root / run_id / f".{stage}.work" / "checkpoints"
    out = {}
    for ckpt in folder.glob("checkpoint-*") if folder.is_dir() else []:
        try:
            json.loads((ckpt / "trainer_state.json").read_text())
            out[int(ckpt.name.split("-")[1])] = True
        except (OSError, ValueError):
            out[int(ckpt.name.split("-")[1])] = False
    return out


# --- the test ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_killed_pipeline_resumes_and_never_leaves_a_corrupt_stage(pipeline):
    store, start = pipeline
    run_id = f"resume-{uuid.uuid4().hex[:6]}"
    work = store.root / run_id / ".reasoning_rl.work"

    # A: SIGKILL in reasoning_rl right after checkpoint-6 is saved (and rotated)
    a = start(run_id)
    a.wait_for("checkpoint-6", lambda: checkpoints(store, run_id).get(6, False))
    # the trainer rotates old checkpoints right after saving: wait for that, not for a guessed time
    a.wait_for("the old checkpoints rotated out", lambda: len(checkpoints(store, run_id)) <= SAVE_LIMIT)
    a.kill()
    assert not (store.root / run_id / "reasoning_rl").exists()
    done = assert_nothing_corrupt(store, run_id)
    assert {"task_data", "base", "cold_start"} <= set(done) and "reasoning_rl" not in done
    kept = checkpoints(store, run_id)
    assert 6 in kept and len(kept) <= SAVE_LIMIT, kept  # bounded: the last N only
    # a kill in the middle of a checkpoint write leaves a directory without its trainer state
    torn = work / "checkpoints" / "checkpoint-7"
    shutil.copytree(work / "checkpoints" / "checkpoint-6", torn)
    (torn / "trainer_state.json").write_text('{"global_step": 7, "log_hist')

    # B: SIGKILL the moment a new checkpoint directory appears (usually mid-write)
    b = start(run_id)
    b.wait_for("checkpoint-8", lambda: (work / "checkpoints" / "checkpoint-8").is_dir())
    b.kill()
    assert not torn.exists(), "the torn checkpoint was resumed from or kept"
    after_b = assert_nothing_corrupt(store, run_id)
    assert_untouched(done, after_b)
    state_b = checkpoints(store, run_id)
    last_complete = max(n for n, ok in state_b.items() if ok)

    # C: SIGKILL the moment the rejection-sampling dataset is being written (a write of a few ms: once
    # the stage starts, spin on it; if the write still slips by, the kill lands right after publishing)
    c = start(run_id)
    rs_work = store.root / run_id / ".rejection_sampling.work"
    rs_data, rs_done = rs_work / "dataset", store.root / run_id / "rejection_sampling"
    c.wait_for("the rejection-sampling stage", rs_work.exists)
    c.wait_for("the rejection-sampling dataset write", lambda: rs_data.exists() or rs_done.exists(), poll=0)
    c.kill()
    print(f"kill C: {'during the dataset write' if not rs_done.exists() else 'just after publishing'}")
    after_c = assert_nothing_corrupt(store, run_id)
    assert_untouched(after_b, after_c)
    rl = after_c["reasoning_rl"]["metrics"]
    assert rl["resumed_from"] == f"checkpoint-{last_complete}" and rl["steps"] == RL_STEPS
    assert not work.exists()  # checkpoints are dropped once the stage is published

    # D: SIGKILL after a random delay, wherever it lands (seeded so a failure can be replayed)
    seed = random.randrange(1 << 16)
    delay = random.Random(seed).uniform(15, 35)
    print(f"kill D after {delay:.1f}s (seed {seed})")
    d = start(run_id)
    # what is left after C can finish before a late kill (a fast host): then there is nothing to kill
    d.wait_for(f"{delay:.1f}s", lambda: time.monotonic() - d.started > delay or d.proc.poll() is not None)
    if d.proc.poll() is not None:
        assert d.proc.returncode == 0, d.tail()
        print("run D finished before its kill")
    d.kill()
    after_d = assert_nothing_corrupt(store, run_id)
    assert_untouched(after_c, after_d)

    # E: to the end, reusing everything that finished
    e = start(run_id)
    assert e.finish() == 0, e.tail()
    final = assert_nothing_corrupt(store, run_id)
    assert_untouched(after_d, final)
    assert {"task_data", "base", "cold_start", "reasoning_rl", "rejection_sampling", "sft", "reward_model",
            "all_scenario_rl", "merged", "eval_all_scenario_rl"} <= set(final)
    assert final["reasoning_rl"]["metrics"]["resumed_from"] == f"checkpoint-{last_complete}"
    reused = re.findall(r"(\w+): reused v", e.log.read_text())
    assert {"task_data", "base", "cold_start", "reasoning_rl"} <= set(reused)
    assert not [p for p in (store.root / run_id).iterdir() if p.name.endswith(".work")]


def test_last_complete_checkpoint_skips_and_removes_torn_ones(tmp_path):
    from core.trainers import last_complete_checkpoint

    assert last_complete_checkpoint(tmp_path / "none") is None
    for n, state in ((2, '{"global_step": 2}'), (10, '{"global_step": 10}'), (12, '{"glob'), (14, None)):
        (tmp_path / f"checkpoint-{n}").mkdir()
        if state is not None:
            (tmp_path / f"checkpoint-{n}" / "trainer_state.json").write_text(state)
    assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-10")  # numeric, not text order
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-10", "checkpoint-2"]
