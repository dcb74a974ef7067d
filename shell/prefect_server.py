"""A local Prefect server and process worker in the background, and the project's deployments.

    python -m shell.prefect_server start [--port 4200]   server + worker + report server, wait, deploy
    python -m shell.prefect_server deploy                 (re)deploy prefect.yaml to the running server
    python -m shell.prefect_server stop                   stop all three (their whole process groups)

The report server (shell/report_server.py, on the Prefect port + 1) serves each run's HTML report,
which the flows link from their artifacts.

State lives under PREFECT_HOME (the project's .prefect/ from the Makefile): the SQLite database, the
logs, and pids.json naming the processes to stop. `start` also points that profile's
PREFECT_API_URL at the server, so `prefect deployment run ...` with the same PREFECT_HOME talks to
it; `stop` removes that setting again so direct runs (`make pipeline`) do not look for a dead server.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from core.runstore import PROJECT_ROOT
from flows.report import REPORT_URL_ENV

log = logging.getLogger(__name__)
POOL = "r1-local"
PIDS = "pids.json"


def prefect_home() -> Path:
    return Path(os.environ.get("PREFECT_HOME", PROJECT_ROOT / ".prefect")).resolve()


def own_home(name: str) -> Path:
    """A Prefect home of its own (created) for one of several processes that run side by side without
    a server to share: their temporary servers on one SQLite database lock each other out, and Prefect
    does not create a home's parent (on a fresh clone .prefect/ does not exist yet)."""
    home = prefect_home() / name
    home.mkdir(parents=True, exist_ok=True)
    return home


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _prefect() -> list[str]:
    return [str(Path(sys.executable).with_name("prefect"))]


@dataclass
class LocalPrefect:
    """A running server + worker: what a caller needs to talk to them and to stop them."""

    home: Path
    api_url: str
    pids: dict[str, int]
    extra_env: dict[str, str]

    def env(self) -> dict[str, str]:
        return environment(self.home, self.api_url) | self.extra_env


def environment(home: Path, api_url: str | None = None) -> dict[str, str]:
    """The environment for every Prefect process of ours (the worker's flow runs inherit it)."""
    env = dict(os.environ)
    env.update({
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",  # else "database is locked" noise on SQLite
        "PREFECT_WORKER_QUERY_SECONDS": env.get("PREFECT_WORKER_QUERY_SECONDS", "2"),
        "PREFECT_WORKER_PREFETCH_SECONDS": env.get("PREFECT_WORKER_PREFETCH_SECONDS", "2"),
        # transformers and TRL log through these loggers: show them in the Prefect UI
        "PREFECT_LOGGING_EXTRA_LOGGERS": env.get("PREFECT_LOGGING_EXTRA_LOGGERS", "core,stages,transformers,trl"),
        "WANDB_MODE": env.get("WANDB_MODE", "offline"),
        "HF_HUB_OFFLINE": env.get("HF_HUB_OFFLINE", "1"),
        "TOKENIZERS_PARALLELISM": "false",
        "PWD": str(PROJECT_ROOT),  # prefect.yaml's pull step runs flows from "{{ $PWD }}"
    })
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return env


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _post(api_url: str, path: str, body: dict) -> object:
    req = urllib.request.Request(f"{api_url}{path}", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read())


def _spawn(args: list[str], env: dict[str, str], logfile: Path) -> int:
    """Start a background process in its own session (so stop() can kill its whole group)."""
    with open(logfile, "ab") as out:
        proc = subprocess.Popen(args, env=env, cwd=PROJECT_ROOT, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    return proc.pid


def _wait(what: str, ready: object, pids: dict[str, int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():  # type: ignore[operator]
            return
        dead = [name for name, pid in pids.items() if not _alive(pid)]
        if dead:
            raise RuntimeError(f"{what}: {dead} exited; see the logs in {prefect_home()}")
        time.sleep(0.5)
    raise TimeoutError(f"{what} did not answer within {timeout:.0f}s")


def _worker_ready(api_url: str) -> bool:
    try:
        workers = _post(api_url, f"/work_pools/{POOL}/workers/filter", {})
    except (urllib.error.URLError, OSError, ValueError):
        return False
    return any(w.get("status") == "ONLINE" for w in workers)  # type: ignore[union-attr]


def start(home: Path | None = None, port: int | None = None, deploy_all: bool = True, timeout: float = 90,
          extra_env: dict[str, str] | None = None) -> LocalPrefect:
    """Start server and worker in the background, wait until both answer, then deploy prefect.yaml.
    `extra_env` goes to both (and so to every flow run), e.g. R1_RUNS_DIR for a test's own store."""
    home = (home or prefect_home()).resolve()
    home.mkdir(parents=True, exist_ok=True)
    if (home / PIDS).is_file() and any(_alive(p) for p in json.loads((home / PIDS).read_text()).values()):
        raise RuntimeError(f"a Prefect server of this project is already running ({home / PIDS}); stop it first")
    port = port or free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    report_port = port + 1 if port + 1 < 65536 else free_port()
    extra_env = {REPORT_URL_ENV: f"http://127.0.0.1:{report_port}"} | (extra_env or {})
    env = environment(home, api_url) | extra_env
    pids: dict[str, int] = {}
    try:
        t0 = time.monotonic()
        pids["reports"] = _spawn([sys.executable, "-m", "shell.report_server", "--port", str(report_port)],
                                 env, home / "reports.log")
        pids["server"] = _spawn([*_prefect(), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                                env, home / "server.log")
        (home / PIDS).write_text(json.dumps(pids))
        _wait("prefect server", lambda: _answers(f"{api_url}/health"), pids, timeout)
        log.info("prefect server answers at %s after %.1fs", api_url, time.monotonic() - t0)
        subprocess.run([*_prefect(), "work-pool", "create", POOL, "--type", "process", "--overwrite"],
                       env=env, cwd=PROJECT_ROOT, check=True, capture_output=True, text=True)
        pids["worker"] = _spawn([*_prefect(), "worker", "start", "--pool", POOL, "--name", f"{POOL}-worker"],
                                env, home / "worker.log")
        (home / PIDS).write_text(json.dumps(pids))
        _wait("prefect worker", lambda: _worker_ready(api_url), pids, timeout)
        log.info("worker online after %.1fs", time.monotonic() - t0)
        if deploy_all:
            deploy(env)
    except BaseException:
        stop(home)
        raise
    return LocalPrefect(home, api_url, pids, extra_env)


def deploy(env: dict[str, str] | None = None) -> None:
    """Register every deployment in prefect.yaml with the server."""
    env = env or environment(prefect_home())
    proc = subprocess.run([*_prefect(), "--no-prompt", "deploy", "--all"], env=env, cwd=PROJECT_ROOT,
                          capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"prefect deploy failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    log.info("deployed prefect.yaml")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child of ours still "exists": reap it if we can
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


def stop(home: Path | None = None, grace: float = 10) -> list[str]:
    """Stop the worker, then the servers: SIGTERM to each process group, SIGKILL after `grace` s."""
    home = (home or prefect_home()).resolve()
    path = home / PIDS
    if not path.is_file():
        return []
    pids = json.loads(path.read_text())
    stopped = []
    for name in ("worker", "server", "reports"):
        pid = pids.get(name)
        if pid is None or not _alive(pid):
            continue
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(pid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and _alive(pid):
                time.sleep(0.2)
            if not _alive(pid):
                break
        stopped.append(name)
    path.unlink()
    return stopped


def _set_profile_api(env: dict[str, str], url: str | None) -> None:
    """Point (or stop pointing) the PREFECT_HOME profile at our server."""
    args = ["config", "set", f"PREFECT_API_URL={url}"] if url else ["config", "unset", "PREFECT_API_URL", "-y"]
    env = {k: v for k, v in env.items() if k != "PREFECT_API_URL"}
    subprocess.run([*_prefect(), *args], env=env, cwd=PROJECT_ROOT, capture_output=True, text=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shell.prefect_server", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("start", help="start server + worker in the background, wait, deploy")
    p.add_argument("--port", type=int, default=int(os.environ.get("PREFECT_PORT", 4200)))
    sub.add_parser("deploy", help="deploy prefect.yaml to the running server")
    sub.add_parser("stop", help="stop server, worker and report server")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    home = prefect_home()
    if args.command == "start":
        local = start(home, args.port)
        _set_profile_api(local.env(), local.api_url)
        print(f"Prefect server {local.api_url.removesuffix('/api')} (UI), worker on pool {POOL}, "
              f"run reports at {local.extra_env[REPORT_URL_ENV]}/<run id>/report/index.html, "
              f"state in {home}\nrun a deployment:  PREFECT_HOME={home} {_prefect()[0]} deployment run "
              f"'r1-pipeline/pocket' --watch\nstop:              make stop")
    elif args.command == "deploy":
        pids = json.loads((home / PIDS).read_text()) if (home / PIDS).is_file() else {}
        if "server" not in pids:
            print(f"no server running under {home}: run `make serve`", file=sys.stderr)
            return 1
        deploy()
    else:
        stopped = stop(home)
        _set_profile_api(environment(home), None)
        print(f"stopped: {', '.join(stopped) or 'nothing was running'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
