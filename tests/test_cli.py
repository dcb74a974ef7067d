"""What a person at a terminal sees from `r1`: user errors as one message without a traceback, the
flows as commands, and Ctrl-C that stops a run at once, leaves nothing behind and can be resumed."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from conftest import SOURCES

ROOT = Path(__file__).resolve().parent.parent
TEST_RECIPE = ROOT / "configs" / "pocket-test.yaml"
# A snapshot of the source for runs that resume: a stage's cache key includes its code's hash.
DISASSEMBLY = re.compile(r"\b(LOAD|STORE)_(GLOBAL|FAST|NAME|ATTR|CONST)\b|^\s*(\d+\s+)?\d+\s+[A-Z][A-Z_]{3,}\b",
                         re.MULTILINE)


def _env(tmp_path: Path, runs: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API", "R1_DEBUG"))}
    env.update({"R1_RUNS_DIR": str(runs), "PREFECT_HOME": str(tmp_path / "prefect"), "OMP_NUM_THREADS": "1",
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
                "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})
    return env


def _r1(tmp_path: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 300
        ) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "shell.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          env=env or _env(tmp_path, tmp_path / "runs"), timeout=timeout)


def test_flows_are_commands_with_the_same_options(capsys):
    from shell import cli

    for command in ("pipeline", "r1-zero", "distill"):
        with pytest.raises(SystemExit) as exit_:
            cli.main([command, "--help"])
        assert exit_.value.code == 0
        usage = capsys.readouterr().out
        for option in ("--recipe", "--set", "--run-id", "--force", "--debug"):
            assert option in usage, (command, option)
    makefile = (ROOT / "Makefile").read_text()
    for target in ("pipeline", "r1-zero", "distill"):
        assert re.search(rf"^{target}: install\n\t\$\(PY\) -m shell.cli {target} ", makefile, re.MULTILINE), target


def test_resume_command_repeats_recipe_and_overrides():
    from argparse import Namespace

    from shell.cli import resume_command

    args = Namespace(command="r1-zero", recipe="configs/pocket-test.yaml", overrides=["a.b=1", "c=[x, y]"])
    assert resume_command(args, "pocket-test-1") == ("r1 r1-zero --recipe configs/pocket-test.yaml --set a.b=1 "
                                                     "--set 'c=[x, y]' --run-id pocket-test-1")


def test_a_bad_override_exits_2_naming_the_override_without_a_traceback(tmp_path):
    proc = _r1(tmp_path, "pipeline", "--recipe", str(TEST_RECIPE), "--set", "reasoning_rl.stepz=5")
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "override 'reasoning_rl.stepz=5'" in proc.stderr and "unknown key 'stepz'" in proc.stderr
    assert "pocket-test.yaml" not in proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    debug = _r1(tmp_path, "pipeline", "--debug", "--recipe", str(TEST_RECIPE), "--set", "reasoning_rl.stepz=5")
    assert debug.returncode == 2 and "Traceback" in debug.stderr  # --debug shows where it was raised


@pytest.mark.slow
def test_bad_data_exits_2_listing_every_bad_row_without_a_traceback(tmp_path):
    data = tmp_path / "tasks.jsonl"
    data.write_text('{"prompt": "1 + 1", "answer": "2"}\n{not json\n{"prompt": "", "answer": "1"}\n'
                    '{"question": "2 + 2", "answer": "4"}\n')
    proc = _r1(tmp_path, "pipeline", "--recipe", str(TEST_RECIPE),
               "--set", f"data.sources=[{{kind: file, path: {data}}}]", "--set", "data.test_size=1", "--set", "data.validation_size=1")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out[-4000:]
    assert "Traceback" not in out
    assert "3 bad row(s)" in proc.stderr
    for line in (2, 3, 4):
        assert f"{data}:{line}:" in proc.stderr, line
    assert not DISASSEMBLY.search(out)


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


@pytest.mark.slow
def test_ctrl_c_stops_a_training_stage_leaves_nothing_running_and_resumes(pocket_run, tmp_path):
    store = pocket_run[0]  # its pocket base is cached: the run reaches reasoning RL quickly
    src = tmp_path / "src"
    for name in SOURCES:
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    env = _env(tmp_path, store.root) | {"PYTHONPATH": str(src)}
    run_id = "ctrl-c-test"
    args = [sys.executable, "-m", "shell.cli", "pipeline", "--recipe", str(src / "configs" / "pocket-test.yaml"),
            "--run-id", run_id, "--set", "reasoning_rl.steps=40", "--set", "reasoning_rl.save_steps=2",
            "--set", "reward_model.steps=10"]
    log = tmp_path / "first.log"
    checkpoints = store.root / run_id / ".reasoning_rl.work" / "checkpoints"
    with open(log, "wb") as out:
        # SIGINT ignored as a shell's background job has it: the CLI must handle it all the same
        proc = subprocess.Popen(args, cwd=src, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        deadline = time.monotonic() + 600
        while not (checkpoints / "checkpoint-2" / "trainer_state.json").is_file():
            assert proc.poll() is None, log.read_text()[-4000:]
            assert time.monotonic() < deadline, "reasoning RL never saved a checkpoint:\n" + log.read_text()[-4000:]
            time.sleep(0.2)
        children = _descendants(proc.pid)
        assert children, "expected the temporary Prefect server as a child"
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)  # to the CLI only, not its group: it must stop its children itself
        code = proc.wait(timeout=60)
        stopped_in = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    text = log.read_text()
    print(f"stopped {stopped_in:.1f}s after SIGINT")
    assert code == 130, text[-4000:]
    assert "Traceback" not in text
    (hint,) = [line for line in text.splitlines() if line.startswith("interrupted")]
    assert f"--run-id {run_id}" in hint and "--set reasoning_rl.steps=40" in hint
    _, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, [" ".join(p.cmdline())[:120] for p in alive]
    assert not (store.root / run_id / "reasoning_rl").exists() and checkpoints.is_dir()

    # the same run id, as the hint says: finished stages are reused, reasoning RL resumes its checkpoint
    before = {m["stage"]: m["finished_at"] for m in store.stages(run_id)}
    resumed = subprocess.run(args, cwd=src, env=env, capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, (resumed.stdout + resumed.stderr)[-4000:]
    after = {m["stage"]: m for m in store.stages(run_id)}
    assert {"task_data", "base", "cold_start"} <= set(before)
    assert all(after[s]["finished_at"] == t for s, t in before.items())
    assert after["reasoning_rl"]["metrics"]["resumed_from"].startswith("checkpoint-")
    assert not DISASSEMBLY.search(text + resumed.stdout + resumed.stderr)
