"""The code sandbox under attack: each hostile program scores 0 and leaves this process and machine alone.

Every attack is wrapped in a task the program would otherwise pass (read n, print 2n), so each
test fails if the sandbox lets the attack through.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from rewards.code import code_reward, pass_fraction
from rewards.sandbox import Limits, describe, run_python

ROOT = Path(__file__).resolve().parent.parent
TESTS = [{"input": "21\n", "output": "42"}, {"input": "5\n", "output": "10"}]
SOLVE = "print(int(input()) * 2)"
FAST = Limits(wall_s=3.0, cpu_s=1)
PWNED = Path("/tmp") / f"pwned-{uuid.uuid4().hex}"

ATTACKS = {
    "infinite_loop": "while True:\n    pass\n" + SOLVE,
    "fork_bomb": "import os\nwhile True:\n    os.fork()\n" + SOLVE,
    "alloc_10gb": "x = bytearray(10 * 1024 ** 3)\n" + SOLVE,
    "socket": "import socket\nsocket.create_connection(('1.1.1.1', 80), timeout=1)\n" + SOLVE,
    "raw_socket": "import socket\ns = socket.socket()\n" + SOLVE,
    "write_outside": f"open({str(PWNED)!r}, 'w').write('pwned')\n" + SOLVE,
    "read_project": f"open({str(ROOT / 'pyproject.toml')!r}).read()\n" + SOLVE,
    "stdout_flood": "while True:\n    print('x' * 10000)\n" + SOLVE,
    "subprocess": "import subprocess\nsubprocess.run(['true'])\n" + SOLVE,
    "ctypes": "import ctypes\n" + SOLVE,
    "kill_parent": "import os\nos.kill(os.getppid(), 9)\n" + SOLVE,
    "remove_outside": f"import os\nos.remove({str(ROOT / 'pyproject.toml')!r})\n" + SOLVE,
}


def _sandbox_processes() -> list[str]:
    out = subprocess.run(["ps", "-eo", "pid,user,args"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if "r1-sandbox" in line or ("nobody" in line and "python" in line)]


def test_a_correct_program_passes():
    assert pass_fraction(SOLVE, TESTS, FAST) == 1.0
    assert pass_fraction("print(42)", TESTS, FAST) == 0.5


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_attack_scores_zero(attack):
    before = set(os.listdir("/tmp"))
    t0 = time.monotonic()
    assert pass_fraction(ATTACKS[attack], TESTS, FAST) == 0.0
    assert time.monotonic() - t0 < 30  # bounded, not a timing benchmark
    assert not PWNED.exists()
    assert (ROOT / "pyproject.toml").is_file()
    assert not [d for d in set(os.listdir("/tmp")) - before if d.startswith("r1-sandbox-")]  # workdir removed
    assert not _sandbox_processes()


def test_stdout_is_capped():
    result = run_python("while True:\n    print('x' * 10000)", limits=Limits(wall_s=3, output_bytes=1 << 16))
    assert not result.ok
    assert len(result.stdout) <= 1 << 16


def test_memory_limit_is_enforced_not_just_caught():
    result = run_python("x = bytearray(10 * 1024 ** 3)", limits=FAST)
    assert result.returncode == 1 and "MemoryError" in result.stderr


def test_environment_is_scrubbed_and_cwd_is_private():
    os.environ["R1_TEST_SECRET"] = "hunter2"
    try:
        result = run_python("import os, json\nprint(json.dumps([dict(os.environ), os.getcwd()]))", limits=FAST)
    finally:
        del os.environ["R1_TEST_SECRET"]
    env, cwd = json.loads(result.stdout)
    assert "R1_TEST_SECRET" not in env and "HOME" not in env
    assert str(ROOT) not in json.dumps(env)
    assert "r1-sandbox-" in cwd and not Path(cwd).exists()


def test_files_inside_the_workdir_are_allowed():
    code = "open('notes.txt', 'w').write('ok')\nprint(open('notes.txt').read())"
    assert run_python(code, limits=FAST).stdout.strip() == "ok"


def test_no_network_namespace_or_uid_is_reported():
    info = describe()
    assert set(info) == {"interpreter", "network_namespace", "runs_as_uid", "default_limits"}


def test_early_exit_does_not_pass_asserts():
    code = "def double(n):\n    return n\nimport os\nos._exit(0)"
    assert pass_fraction(code, ["assert double(2) == 4"], FAST) == 0.0
    assert pass_fraction("def double(n):\n    return 2 * n", ["assert double(2) == 4", "assert double(0) == 1"],
                         FAST) == 0.5


def test_a_hostile_batch_of_100_finishes():
    hostile = list(ATTACKS.values())
    completions = [f"<think>x</think>\n```python\n{hostile[i % len(hostile)]}\n```" for i in range(100)]
    tests = [json.dumps(TESTS)] * 100
    out = code_reward(completions, tests=tests, timeout_s=1.0, cpu_s=1, workers=8)
    assert out == [0.0] * 100
    assert not PWNED.exists()
    assert not _sandbox_processes()
