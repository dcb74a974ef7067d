"""The code sandbox under attack: each hostile program scores 0 and leaves this process and machine alone.

Every attack is wrapped in a task the program would otherwise pass (read n, print 2n), so each
test fails if the sandbox lets the attack through. The kernel layers (bubblewrap namespaces,
rlimits) are also attacked with the audit hook switched off, so that each is shown to hold alone.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

from rewards import sandbox
from rewards.catalog import validate
from rewards.code import check_sandbox, code_reward, pass_fraction
from rewards.sandbox import Limits, SandboxUnavailable, describe, run_python

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


def _sandbox_processes(grace_s: float = 10.0) -> list[str]:
    """Sandboxed processes still alive after `grace_s`. The kernel kills a sandbox's processes when
    its PID namespace ends, but on a loaded machine they can still be exiting when the reward
    returns (seen once, with three benchmark processes on the two cores), so poll before judging."""
    deadline = time.monotonic() + grace_s
    while True:
        out = subprocess.run(["ps", "-eo", "pid,user,args"], capture_output=True, text=True).stdout
        left = [line for line in out.splitlines() if "r1-sandbox" in line or ("nobody" in line and "python" in line)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.2)


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


@pytest.mark.parametrize("mode", ["kernel", "process"])
def test_environment_is_scrubbed_and_cwd_is_private(mode):
    os.environ["R1_TEST_SECRET"] = "hunter2"
    try:
        result = run_python("import os, json\nprint(json.dumps([dict(os.environ), os.getcwd()]))", limits=FAST,
                            mode=mode)
    finally:
        del os.environ["R1_TEST_SECRET"]
    env, cwd = json.loads(result.stdout)
    assert "R1_TEST_SECRET" not in env and "HOME" not in env
    assert str(ROOT) not in json.dumps(env)
    if mode == "kernel":
        assert cwd == "/work"  # a private tmpfs inside the sandbox; nothing of it exists on the host
    else:
        assert "r1-sandbox-" in cwd and not Path(cwd).exists()


def test_files_inside_the_workdir_are_allowed():
    code = "open('notes.txt', 'w').write('ok')\nprint(open('notes.txt').read())"
    assert run_python(code, limits=FAST).stdout.strip() == "ok"


def test_describe_reports_the_kernel_layers_this_machine_has():
    info = describe()
    assert info["mode"] == "kernel" and info["available"] and info["reason"] is None
    assert info["mount_namespace"] and info["pid_namespace"] and info["network_namespace"]
    assert info["runs_as_uid"] == (65534 if os.geteuid() == 0 else os.geteuid())
    weak = describe("process")
    assert not weak["mount_namespace"] and not weak["pid_namespace"]


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


# --- the kernel boundary (bubblewrap) ----------------------------------------------------------
# `_posixsubprocess.fork_exec` raises no audit event, so a shell started through it is what a
# determined program gets past the hook; these attacks use it and also run with the hook off.

HOST_FILE = ROOT / "pyproject.toml"


def _escape(command: str, audit_hook: bool, limits: Limits = FAST):
    """Run `command` under /bin/sh, started the way subprocess does on 3.11 (no audit event), and print its output."""
    code = f"""
import _posixsubprocess, os
r, w = os.pipe()
er, ew = os.pipe()
pid = _posixsubprocess.fork_exec([b'/bin/sh', b'-c', {command.encode()!r}], [b'/bin/sh'], True, (), None,
    [b'PATH=/usr/bin:/bin'], -1, -1, -1, w, -1, w, er, ew, True, False, -1, None, None, None, -1, None, False)
os.close(w)
os.close(ew)
out = b''
while chunk := os.read(r, 65536):
    out += chunk
os.waitpid(pid, 0)
print(out.decode(errors='replace'))
"""
    return run_python(code, limits=limits, audit_hook=audit_hook)


@pytest.mark.parametrize("audit_hook", [True, False])
def test_fork_exec_escape_cannot_read_project_files_or_write_host_tmp(audit_hook):
    marker = f"fork-exec-{uuid.uuid4().hex}"
    result = _escape(f"id; cat {HOST_FILE}; cat /etc/passwd; echo pwned > /tmp/{marker}; ls /tmp", audit_hook)
    assert "uid=" in result.stdout, result  # the shell really ran: the kernel, not the hook, stopped the rest
    assert "[project]" not in result.stdout and "root:" not in result.stdout
    assert not (Path("/tmp") / marker).exists()


def test_detached_grandchild_dies_with_the_run():
    tag = f"{time.time_ns() % 10**6 + 500}.25"  # a sleep length no other process uses
    result = _escape(f"setsid sleep {tag} > /dev/null 2>&1 & echo started", audit_hook=False)
    assert "started" in result.stdout, result
    left = subprocess.run(["pgrep", "-f", f"sleep {tag}"], capture_output=True, text=True).stdout
    assert left == "", f"sandbox process outlived its run: {left}"


def test_concurrent_runs_cannot_see_each_others_files():
    secret = uuid.uuid4().hex
    writer = f"""
import time
open('answer.txt', 'w').write({secret!r})
try:
    open('/tmp/answer.txt', 'w').write({secret!r})
except OSError:
    pass
time.sleep(2)
"""
    thread = threading.Thread(target=run_python, args=(writer,), kwargs={"limits": Limits(wall_s=5), "audit_hook": False})
    thread.start()
    time.sleep(0.8)
    found = _escape("cat /tmp/*/answer.txt /tmp/answer.txt /work/answer.txt; ls -R / 2>/dev/null | grep -c answer",
                    audit_hook=False, limits=Limits(wall_s=3, processes=16))
    thread.join()
    assert secret not in found.stdout
    assert found.stdout.strip().endswith("0"), found


@pytest.mark.parametrize(("name", "code"), [
    ("network", "import socket\ns = socket.socket()\ns.settimeout(1)\ns.connect(('1.1.1.1', 80))\nprint('connected')"),
    ("host_processes", "import os\nprint('pids', sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))"),
    ("read_only_root", "open('/usr/pwned', 'w').write('x')\nprint('wrote')"),
    ("project_tree", f"import os\nos.listdir({str(ROOT)!r})\nprint('listed')"),
    ("memory", "x = bytearray(10 * 1024 ** 3)\nprint('allocated')"),
    ("fork_bomb", "import os\nfor _ in range(64):\n    os.fork()\nprint('forked')"),
    ("disk", "open('big', 'wb').write(b'x' * (200 << 20))\nprint('wrote')"),
])
def test_kernel_layer_holds_without_the_audit_hook(name, code):
    result = run_python(code, limits=FAST, audit_hook=False)
    if name == "host_processes":
        assert result.ok and max(json.loads(result.stdout.split(" ", 1)[1])) < 10, result  # own PID namespace
    elif name == "network" and result.ok:
        pytest.fail(f"network reached: {result}")
    else:
        assert not result.ok and not any(w in result.stdout for w in ("connected", "wrote", "listed",
                                                                      "allocated", "forked")), (name, result)


def test_host_loopback_services_are_out_of_reach():
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(5)
    port = server.getsockname()[1]
    code = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1)\nprint('reached')"
    try:
        result = run_python(code, limits=FAST, audit_hook=False)
    finally:
        server.close()
    assert "reached" not in result.stdout and "ConnectionRefusedError" in result.stderr, result


def test_without_bwrap_the_code_reward_refuses_and_names_the_fix(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None if name == "bwrap" else "/usr/bin/" + name)
    sandbox.kernel_sandbox.cache_clear()
    try:
        with pytest.raises(SandboxUnavailable, match="bubblewrap") as exc:
            run_python("print(1)")
        assert "sandbox: process" in str(exc.value)
        with pytest.raises(ValueError, match="bubblewrap"):
            check_sandbox({})
        assert "process" in check_sandbox({"sandbox": "process"})  # the explicit weaker mode still runs
        assert run_python("print(1)", mode="process").stdout.strip() == "1"
    finally:
        sandbox.kernel_sandbox.cache_clear()


def test_recipe_validation_reports_the_sandbox_mode():
    class Spec:
        name, params = "code", {}
    assert "sandbox mode kernel" in validate([Spec()])[0]
    Spec.params = {"sandbox": "chroot"}
    with pytest.raises(ValueError, match="expected one of"):
        validate([Spec()])


# --- each kernel layer alone, in each mode: what describe() claims, shown from inside ------------


def _sandboxed_uids(mode: str) -> set[tuple[int, int]]:
    """(real, effective) host uids of the sandboxed interpreter, seen from the host while it runs
    (polled with a deadline: it is one of this process's descendants, namespaces or not)."""
    import psutil

    found: set[tuple[int, int]] = set()
    done = threading.Event()

    def run() -> None:
        run_python("import time\ntime.sleep(30)", limits=Limits(wall_s=60, cpu_s=1), mode=mode, audit_hook=False)
        done.set()

    threading.Thread(target=run, daemon=True).start()
    deadline = time.monotonic() + 60
    while not found and not done.is_set() and time.monotonic() < deadline:
        for child in psutil.Process().children(recursive=True):
            try:
                if child.cmdline()[1:3] == ["-I", "-S"]:
                    found.add(tuple(child.uids()[:2]))
                    child.kill()  # seen; the run may end
            except (psutil.NoSuchProcess, psutil.AccessDenied, IndexError):
                continue
        time.sleep(0.05)
    assert done.wait(60)
    return found


def _unshare_works() -> bool:
    """Whether the sandbox user can make a network namespace here (probed apart from rewards/sandbox.py)."""
    user = {"user": 65534, "group": 65534, "extra_groups": []} if os.geteuid() == 0 else {}
    unshare = shutil.which("unshare")
    return bool(unshare) and subprocess.run([unshare, "-rn", "true"], capture_output=True, **user).returncode == 0


@pytest.mark.parametrize("mode", ["kernel", "process"])
def test_privilege_drop_holds_without_the_audit_hook(mode):
    """The program runs on the host as the uid describe() names (nobody when the host runs as root)."""
    info = describe(mode)
    if os.geteuid() == 0:
        assert info["runs_as_uid"] == 65534
    assert _sandboxed_uids(mode) == {(info["runs_as_uid"], info["runs_as_uid"])}


@pytest.mark.parametrize("mode", ["kernel", "process"])
def test_network_namespace_holds_without_the_audit_hook(mode):
    """With its own network namespace the program sees only a loopback device; describe() says so
    wherever this machine can make one."""
    info = describe(mode)
    if mode == "process":
        assert info["network_namespace"] == _unshare_works()
    result = run_python("import socket\nprint(' '.join(n for _, n in socket.if_nameindex()))", limits=FAST,
                        mode=mode, audit_hook=False)
    assert result.ok, result
    host = {n for _, n in socket.if_nameindex()}
    assert host != {"lo"}, "the host itself has only loopback: this test cannot tell"
    if info["network_namespace"]:
        assert result.stdout.split() == ["lo"], result
    else:
        assert set(result.stdout.split()) == host


def test_mount_and_pid_namespaces_hold_without_the_audit_hook():
    """describe()'s mount and PID namespaces, seen from inside: the program is PID 1's child in a tree
    of its own and sees no host home or project directory."""
    info = describe()
    assert info["mount_namespace"] and info["pid_namespace"]
    code = f"import os\nprint(os.getpid() < 10, os.path.exists({str(ROOT)!r}), os.path.exists('/root'))"
    result = run_python(code, limits=FAST, audit_hook=False)
    assert result.ok and result.stdout.split() == ["True", "False", "False"], result
