"""Running untrusted, model-written Python: a separate, limited, disposable process.

Two isolation modes. `kernel` (the default) is a boundary; `process` is a weaker fallback that a
recipe must ask for by name (`params: {sandbox: process}` on the code reward).

`kernel`: each run is a bubblewrap (`bwrap`) sandbox of its own:
  - new user, mount, PID, network, IPC, UTS and cgroup namespaces (`--unshare-all`): no network
    interface but a down loopback, no view of the host's processes, and when the run's first
    process exits the PID namespace dies with every descendant (setsid or not); `--die-with-parent`
    kills it if we die;
  - a root built from nothing: read-only /usr (the interpreter and its stdlib, plus its prefix when
    it lives elsewhere) and /etc/ld.so.cache, a fresh /proc and minimal /dev, and private,
    size-capped tmpfs mounts for /tmp and the working directory /work. No project file, no host
    /tmp, no host /etc, no other run's files: the program arrives as a file descriptor;
  - as root on the host, bwrap itself is started as `nobody`, so the sandbox is an unprivileged
    user namespace and the kernel enforces the process-count limit (root is exempt from it);
  - a scrubbed environment and a new terminal session.
`process`: the same interpreter as `nobody` inside `unshare -rn` (network namespace only) with a
throwaway directory under the host's /tmp. The host's world-readable files stay readable there.

In both modes the bootstrap below sets resource limits before any user code runs (soft = hard:
CPU seconds, address space, processes, file size (which also caps captured output: stdout/stderr
go to files and SIGXFSZ ends a flood), open files, no core), and installs an audit hook (PEP 578)
that refuses sockets, subprocesses, fork/exec, kill, ctypes and file access outside the working
directory. The hook is a tripwire, not a boundary (`_posixsubprocess.fork_exec` walks around it);
it stays because it costs nothing and turns most attacks into a clear PermissionError. A
wall-clock timeout kills the whole process group. Rlimits are set inside the child rather than
through `preexec_fn`, which is unsafe in a threaded parent (the code reward runs sandboxes from
a thread pool).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger(__name__)

SANDBOX_UID = 65534  # nobody
SOLUTION_FILE = "solution.py"

# Runs in the child before the user's code. Written for any CPython >= 3.8 stdlib.
BOOTSTRAP = r'''
import json, os, resource, sys
cfg = json.loads(sys.argv[1])
for name, value in cfg["rlimits"].items():
    resource.setrlimit(getattr(resource, name), (value, value))
nonce = sys.stdin.readline().strip() if cfg["mode"] == "assert" else None
cwd = os.path.realpath(os.getcwd())
readable = tuple(sorted({os.path.realpath(p) for p in sys.path if p} | {os.path.dirname(os.__file__)}))
devices = ("/dev/null", "/dev/urandom", "/dev/zero")
write_flags = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
blocked = ("socket.", "subprocess.", "os.exec", "os.fork", "os.posix_spawn", "os.spawn", "os.system",
           "os.kill", "os.killpg", "os.setsid", "os.setuid", "os.chroot", "pty.", "ctypes.", "signal.pthread_kill",
           "sys.addaudithook", "winreg.", "_winapi.")
path_events = {"os.listdir": 1, "os.scandir": 1, "os.chdir": 1, "os.remove": 1, "os.rmdir": 1, "os.mkdir": 1,
               "os.rename": 2, "os.link": 2, "os.symlink": 2, "os.chmod": 1, "os.chown": 1,
               "os.truncate": 1, "os.utime": 1, "shutil.rmtree": 1, "shutil.copyfile": 2, "shutil.move": 2}
read_events = ("os.listdir", "os.scandir")

def under(path, roots):
    if isinstance(path, int) or path is None:
        return True
    full = os.path.realpath(os.path.join(cwd, os.fsdecode(path)))
    return any(full == r or full.startswith(r.rstrip("/") + "/") for r in roots)

def deny(event, detail):
    raise PermissionError("sandbox: %s %s is not allowed" % (event, detail))

def hook(event, args):
    if event == "open":
        path, mode, flags = (tuple(args) + (None, None, None))[:3]
        writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or \
            (isinstance(flags, int) and flags & write_flags)
        if under(path, (cwd,)) or under(path, devices) or (not writes and under(path, readable)):
            return
        deny(event, repr(path))
    elif event.startswith(blocked):
        deny(event, "")
    elif event == "import" and args and str(args[0]).split(".")[0] in ("ctypes", "_ctypes"):
        deny(event, args[0])
    elif event in path_events:
        roots = (cwd,) + (readable if event in read_events else ())
        for path in args[: path_events[event]]:
            if not under(path, roots):
                deny(event, repr(path))

if cfg["audit_hook"]:
    sys.addaudithook(hook)
del hook
with open("solution.py", encoding="utf-8") as fh:
    source = fh.read()
code = compile(source, "solution.py", "exec")
del source, fh, cfg
# Assert tests import the program as a module: its `if __name__ == "__main__":` block stays quiet.
exec(code, {"__name__": "solution" if nonce is not None else "__main__", "__builtins__": __builtins__})
if nonce is not None:
    sys.stdout.flush()
    os.write(1, ("\n" + nonce + "\n").encode())
'''


@dataclass(frozen=True)
class Limits:
    """What one sandboxed run may use."""

    wall_s: float = 5.0  # wall-clock seconds before the process group is killed
    cpu_s: int = 2  # CPU seconds (RLIMIT_CPU)
    memory_mb: int = 512  # address space (RLIMIT_AS)
    processes: int = 4  # RLIMIT_NPROC: processes and threads (per sandbox in kernel mode: its own user namespace)
    output_bytes: int = 1 << 20  # largest file the child may write, stdout/stderr included (RLIMIT_FSIZE)
    open_files: int = 32  # RLIMIT_NOFILE
    disk_mb: int = 64  # size of each private tmpfs (/work and /tmp) in kernel mode


@dataclass(frozen=True)
class RunResult:
    returncode: int | None  # negative: killed by that signal
    stdout: str
    stderr: str
    timed_out: bool

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out

    @property
    def hit_limit(self) -> bool:
        """Killed by the wall clock or a resource limit (CPU, file size) rather than exiting by itself."""
        return self.timed_out or (self.returncode is not None and self.returncode < 0)


MODES = ("kernel", "process")
INSTALL_HINT = ("install the `bubblewrap` package (Debian/Ubuntu: apt-get install bubblewrap; Fedora: dnf install "
                "bubblewrap; without root, ask your administrator for it and for unprivileged user namespaces)")


class SandboxUnavailable(RuntimeError):
    """The requested isolation cannot be had on this machine."""


def _drop_privileges() -> bool:
    return os.geteuid() == 0


def _as_sandbox_user() -> dict:
    return {"user": SANDBOX_UID, "group": SANDBOX_UID, "extra_groups": []} if _drop_privileges() else {}


def _env() -> dict[str, str]:
    # Nothing of the parent's environment: no HOME, tokens, proxies or project paths.
    return {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}


def _probe(cmd: list[str]) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=20, cwd="/", env=_env(),
                              **_as_sandbox_user())
    except (OSError, subprocess.SubprocessError):
        return None


@functools.cache
def interpreter() -> str:
    """A Python the sandbox user can execute (the project's own may live where `nobody` cannot read)."""
    candidates = [sys.executable, os.path.realpath(sys.executable), shutil.which("python3", path="/usr/bin:/bin")]
    for candidate in filter(None, candidates):
        done = _probe([candidate, "-I", "-S", "-c", "import resource, json"])
        if done is not None and done.returncode == 0:
            return candidate
    raise SandboxUnavailable(f"no Python interpreter the sandbox user can run; tried {candidates}")


@functools.cache
def _interpreter_root() -> str:
    """The directory tree the interpreter and its stdlib live in (bound read-only into the sandbox)."""
    done = _probe([interpreter(), "-I", "-S", "-c", "import sys; print(sys.base_prefix)"])
    return os.path.realpath(done.stdout.strip()) if done is not None and done.returncode == 0 else "/usr"


def _bwrap_args(bwrap: str, tmp_mb: int) -> list[str]:
    args = [bwrap, "--unshare-all", "--die-with-parent", "--new-session", "--hostname", "sandbox",
            "--ro-bind", "/usr", "/usr", "--symlink", "usr/bin", "/bin", "--symlink", "usr/lib", "/lib",
            "--symlink", "usr/lib64", "/lib64", "--symlink", "usr/sbin", "/sbin"]
    if os.path.exists("/etc/ld.so.cache"):  # lets the loader find /usr/lib/<arch> libraries
        args += ["--ro-bind", "/etc/ld.so.cache", "/etc/ld.so.cache"]
    root = _interpreter_root()
    if root != "/usr" and not root.startswith("/usr/"):
        args += ["--ro-bind", root, root]
    size = str(tmp_mb << 20)
    return args + ["--proc", "/proc", "--dev", "/dev", "--size", size, "--tmpfs", "/tmp",
                   "--size", size, "--tmpfs", "/work", "--chdir", "/work"]


@functools.cache
def kernel_sandbox() -> str | None:
    """None when bwrap can make a sandbox here, else the reason it cannot (probed once)."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return f"`bwrap` is not on PATH: {INSTALL_HINT}"
    try:
        python = interpreter()
    except SandboxUnavailable as exc:
        return str(exc)
    done = _probe([*_bwrap_args(bwrap, 1), python, "-I", "-S", "-c", "import resource, json"])
    if done is None or done.returncode != 0:
        why = (done.stderr.strip().splitlines() or ["no output"])[-1] if done is not None else "did not start"
        return (f"bwrap cannot make a sandbox here ({why}): user namespaces may be disabled "
                f"(sysctl kernel.unprivileged_userns_clone=1, user.max_user_namespaces > 0); {INSTALL_HINT}")
    return None


@functools.cache
def network_prefix() -> tuple[str, ...]:
    """`unshare -rn` when a private network namespace can be made here, else () (logged once): process mode."""
    unshare = shutil.which("unshare")
    done = _probe([unshare, "-rn", interpreter(), "-I", "-S", "-c", "pass"]) if unshare else None
    if done is not None and done.returncode == 0:
        return (unshare, "-rn")
    log.warning("sandbox: no network namespace available (unshare -rn failed); network is blocked "
                "by the audit hook only")
    return ()


def check_mode(mode: str) -> None:
    """Raise SandboxUnavailable (with what to do) unless runs in `mode` can be made here."""
    if mode not in MODES:
        raise ValueError(f"sandbox: expected one of {MODES}, got {mode!r}")
    if mode == "kernel":
        reason = kernel_sandbox()
        if reason is not None:
            raise SandboxUnavailable(
                f"code sandbox: no kernel isolation on this machine: {reason}. Or accept the weaker process "
                "sandbox (no mount or PID namespace: the host's world-readable files are readable) by setting "
                "`params: {sandbox: process}` on the code reward in the recipe.")
    else:
        interpreter()


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _read_capped(fh, limit: int) -> str:
    fh.seek(0)
    return fh.read(limit).decode("utf-8", errors="replace")


def run_python(code: str, stdin: str = "", limits: Limits | None = None, assert_mode: bool = False,
               mode: str = "kernel", audit_hook: bool = True) -> RunResult:
    """Run `code` in the sandbox, feeding `stdin`; its output is captured up to limits.output_bytes.

    In assert mode the bootstrap prints a fresh random line after the code finishes, so a program
    that exits early (`os._exit(0)`) before its asserts run is not mistaken for one that passed.
    `mode` is "kernel" or "process" (module docstring); `audit_hook=False` leaves out the second
    layer (tests use it to show that the kernel's layers hold on their own).
    """
    check_mode(mode)
    limits = limits or Limits()
    rlimits = {
        "RLIMIT_CPU": limits.cpu_s,
        "RLIMIT_AS": limits.memory_mb << 20,
        "RLIMIT_NPROC": limits.processes,
        "RLIMIT_FSIZE": limits.output_bytes,
        "RLIMIT_NOFILE": limits.open_files,
        "RLIMIT_CORE": 0,
    }
    config = json.dumps({"rlimits": rlimits, "mode": "assert" if assert_mode else "io", "audit_hook": audit_hook})
    bootstrap = [interpreter(), "-I", "-S", "-c", BOOTSTRAP, config]
    nonce = os.urandom(16).hex() if assert_mode else None
    with contextlib.ExitStack() as stack:
        files = [stack.enter_context(tempfile.TemporaryFile()) for _ in range(4)]
        fin, fout, ferr, fcode = files
        fin.write(((nonce + "\n") if nonce else "").encode() + stdin.encode("utf-8"))
        fin.seek(0)
        if mode == "kernel":
            # The program enters the sandbox's private /work as a file descriptor: no host directory.
            fcode.write(code.encode("utf-8"))
            fcode.seek(0)
            cmd = [*_bwrap_args(shutil.which("bwrap"), limits.disk_mb), "--file", str(fcode.fileno()), f"/work/{SOLUTION_FILE}", *bootstrap]
            cwd, pass_fds = "/", (fcode.fileno(),)
        else:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="r1-sandbox-")))
            (work / SOLUTION_FILE).write_text(code, encoding="utf-8")
            if _drop_privileges():
                os.chown(work, SANDBOX_UID, SANDBOX_UID)
                os.chown(work / SOLUTION_FILE, SANDBOX_UID, SANDBOX_UID)
            cmd, cwd, pass_fds = [*network_prefix(), *bootstrap], work, ()
        proc = subprocess.Popen(cmd, cwd=cwd, env=_env(), stdin=fin, stdout=fout, stderr=ferr, pass_fds=pass_fds,
                                start_new_session=True, close_fds=True, **_as_sandbox_user())
        timed_out = False
        try:
            proc.wait(timeout=limits.wall_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(proc.pid)
            proc.wait()
        finally:
            _kill_group(proc.pid)  # grandchildren that outlived the child (process mode)
        stdout = _read_capped(fout, limits.output_bytes)
        stderr = _read_capped(ferr, 4096)
    returncode = proc.returncode
    if nonce is not None:
        lines = stdout.rstrip("\n").rsplit("\n", 1)
        finished = lines[-1] == nonce
        stdout = lines[0] if finished and len(lines) == 2 else ("" if finished else stdout)
        if not finished and returncode == 0:
            returncode = 1  # exited before the bootstrap's end: the asserts did not all run
    return RunResult(returncode, stdout, stderr, timed_out)


def describe(mode: str = "kernel") -> dict[str, object]:
    """How a run in `mode` is isolated on this machine (for doctor, dry runs, logs and manifests)."""
    reason = kernel_sandbox() if mode == "kernel" else None
    usable = reason is None
    return {
        "mode": mode,
        "available": usable,
        "reason": reason,
        "interpreter": interpreter(),
        "mount_namespace": mode == "kernel" and usable,
        "pid_namespace": mode == "kernel" and usable,
        "network_namespace": (mode == "kernel" and usable) or (mode == "process" and bool(network_prefix())),
        "runs_as_uid": SANDBOX_UID if _drop_privileges() else os.geteuid(),
        "default_limits": asdict(Limits()),
    }
