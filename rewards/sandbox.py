"""Running untrusted, model-written Python: a separate, limited, disposable process.

Layers, outermost first (each holds on its own if another is missing):
  1. a fresh process of a stdlib-only interpreter, `python -I -S` (isolated: no site-packages, no
     PYTHON* variables, no script directory on the path), with a scrubbed environment and a
     throwaway working directory that is deleted afterwards;
  2. as root: the child runs as `nobody` (uid 65534), so the kernel enforces the process-count
     limit (root is exempt from it) and file permissions protect root-owned files;
  3. no network: the child runs inside `unshare -rn` (new user + network namespace: no interfaces
     but a down loopback) when the kernel allows it; probed once, and logged when it does not;
  4. resource limits set by the bootstrap before any user code runs, soft = hard so the code
     cannot raise them: CPU seconds, address space, process count, file size (which also caps
     captured output: stdout/stderr go to files and SIGXFSZ ends a flood), open files, no core;
  5. an audit hook (PEP 578) installed by the bootstrap: sockets, subprocesses, fork/exec, kill,
     ctypes, and file access outside the working directory (reads of the stdlib excepted) raise
     PermissionError;
  6. a wall-clock timeout after which the whole process group (new session) is killed, and a
     final kill of the group in any case, so no grandchild outlives the run.
Rlimits are set inside the child rather than through `preexec_fn`, which is unsafe in a threaded
parent (the code reward runs sandboxes from a thread pool).

Limits of the design, stated plainly: the audit hook is a tripwire, not a security boundary
(code can reach around it with enough introspection); the boundaries are the kernel's: the uid,
the namespaces and the rlimits. Files under /tmp that `nobody` can write are guarded only by the
audit hook.
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
    processes: int = 4  # RLIMIT_NPROC: counts all of the sandbox user's processes and threads
    output_bytes: int = 1 << 20  # largest file the child may write, stdout/stderr included (RLIMIT_FSIZE)
    open_files: int = 32  # RLIMIT_NOFILE


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


def _drop_privileges() -> bool:
    return os.geteuid() == 0


def _probe(cmd: list[str]) -> bool:
    user = {"user": SANDBOX_UID, "group": SANDBOX_UID, "extra_groups": []} if _drop_privileges() else {}
    try:
        done = subprocess.run(cmd, capture_output=True, timeout=20, cwd="/", env=_env(), **user)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


@functools.cache
def interpreter() -> str:
    """A Python the sandbox user can execute (the project's own may live where `nobody` cannot read)."""
    candidates = [sys.executable, os.path.realpath(sys.executable), shutil.which("python3", path="/usr/bin:/bin")]
    for candidate in filter(None, candidates):
        if _probe([candidate, "-I", "-S", "-c", "import resource, json"]):
            return candidate
    raise RuntimeError(f"no Python interpreter the sandbox user can run; tried {candidates}")


@functools.cache
def network_prefix() -> tuple[str, ...]:
    """`unshare -rn` when a private network namespace can be made here, else () (logged once)."""
    unshare = shutil.which("unshare")
    if unshare and _probe([unshare, "-rn", interpreter(), "-I", "-S", "-c", "pass"]):
        return (unshare, "-rn")
    log.warning("sandbox: no network namespace available (unshare -rn failed); network is blocked "
                "by the audit hook only")
    return ()


def _env() -> dict[str, str]:
    # Nothing of the parent's environment: no HOME, tokens, proxies or project paths.
    return {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _read_capped(fh, limit: int) -> str:
    fh.seek(0)
    return fh.read(limit).decode("utf-8", errors="replace")


def run_python(code: str, stdin: str = "", limits: Limits | None = None, assert_mode: bool = False) -> RunResult:
    """Run `code` in the sandbox, feeding `stdin`; its output is captured up to limits.output_bytes.

    In assert mode the bootstrap prints a fresh random line after the code finishes, so a program
    that exits early (`os._exit(0)`) before its asserts run is not mistaken for one that passed.
    """
    limits = limits or Limits()
    work = Path(tempfile.mkdtemp(prefix="r1-sandbox-"))
    user = {}
    try:
        (work / SOLUTION_FILE).write_text(code, encoding="utf-8")
        if _drop_privileges():
            os.chown(work, SANDBOX_UID, SANDBOX_UID)
            os.chown(work / SOLUTION_FILE, SANDBOX_UID, SANDBOX_UID)
            user = {"user": SANDBOX_UID, "group": SANDBOX_UID, "extra_groups": []}
        rlimits = {
            "RLIMIT_CPU": limits.cpu_s,
            "RLIMIT_AS": limits.memory_mb << 20,
            "RLIMIT_NPROC": limits.processes,
            "RLIMIT_FSIZE": limits.output_bytes,
            "RLIMIT_NOFILE": limits.open_files,
            "RLIMIT_CORE": 0,
        }
        config = json.dumps({"rlimits": rlimits, "mode": "assert" if assert_mode else "io"})
        cmd = [*network_prefix(), interpreter(), "-I", "-S", "-c", BOOTSTRAP, config]
        nonce = os.urandom(16).hex() if assert_mode else None
        with tempfile.TemporaryFile() as fin, tempfile.TemporaryFile() as fout, tempfile.TemporaryFile() as ferr:
            fin.write(((nonce + "\n") if nonce else "").encode() + stdin.encode("utf-8"))
            fin.seek(0)
            proc = subprocess.Popen(cmd, cwd=work, env=_env(), stdin=fin, stdout=fout, stderr=ferr,
                                    start_new_session=True, close_fds=True, **user)
            timed_out = False
            try:
                proc.wait(timeout=limits.wall_s)
            except subprocess.TimeoutExpired:
                timed_out = True
                _kill_group(proc.pid)
                proc.wait()
            finally:
                _kill_group(proc.pid)  # grandchildren that outlived the child
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
    finally:
        shutil.rmtree(work, ignore_errors=True)


def describe() -> dict[str, object]:
    """How sandboxing is done on this machine (for logs and manifests)."""
    return {
        "interpreter": interpreter(),
        "network_namespace": bool(network_prefix()),
        "runs_as_uid": SANDBOX_UID if _drop_privileges() else os.geteuid(),
        "default_limits": asdict(Limits()),
    }
