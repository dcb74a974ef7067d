"""The two environments, as pip's resolver sees them: what each install would bring, without installing.

  python -m shell.environments controller   # make install's resolution: the pins + Prefect + dev tools
  python -m shell.environments gpu          # make install-gpu's: the pins + vLLM, no Prefect
  python -m shell.environments canary       # the pins + Prefect + any vLLM TRL could use: still impossible?

Each asks `pip install --dry-run --ignore-installed --report` (pip's own resolver, metadata only: no
wheel is downloaded) for the requirement strings of pyproject.toml, and prints the versions that
matter (vLLM, torch, transformers, fastapi, prefect) or why it cannot resolve. tests/test_environments.py
asserts the same answers in `make test`, skipped when the package index cannot be reached.

It runs pip `--isolated`: a machine's pip configuration must not change the answer. This one's, for
instance, adds a local CPU torch wheel (`find-links`), which the resolver would prefer to PyPI's CUDA
build, and caps torch at 2.14.1 (our pin is below the cap either way). `R1_RESOLVER_INDEX_URL` names
another index (a mirror); `PIP_CERT` is passed on as `--cert`.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from core.runstore import PROJECT_ROOT

INDEX_ENV = "R1_RESOLVER_INDEX_URL"
CACHE_HOURS_ENV = "R1_RESOLVER_CACHE_HOURS"  # reuse an answer this young (default 24; 0: always ask pip)
CACHE_DIR = PROJECT_ROOT / ".cache" / "resolver"
DEFAULT_INDEX = "https://pypi.org/simple"
# TRL 1.16 supports vLLM 0.22.0-0.31.0 (trl[vllm]); the canary asks for any vLLM from there up, so a
# release that lifts the fastapi cap (and supports our torch) turns it green.
CANARY_VLLM = "vllm>=0.22.0"
WATCHED = ("vllm", "torch", "transformers", "trl", "fastapi", "prefect", "starlette", "pydantic")


@dataclass(frozen=True)
class Resolution:
    name: str
    requirements: tuple[str, ...]
    ok: bool
    versions: dict[str, str]  # package (normalised name) -> version, when ok
    conflict: str  # pip's explanation, when not ok
    wall_s: float
    cached: bool = False


def _normalise(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def project_requirements(pyproject: Path = PROJECT_ROOT / "pyproject.toml") -> tuple[list[str], dict[str, list[str]]]:
    """(the dependencies, extra -> its requirements) of pyproject.toml."""
    project = tomllib.loads(pyproject.read_text())["project"]
    return list(project["dependencies"]), {k: list(v) for k, v in project.get("optional-dependencies", {}).items()}


def environment(name: str) -> list[str]:
    """The requirement strings of one environment: controller, gpu, or the canary (controller + vLLM)."""
    deps, extras = project_requirements()
    if name == "controller":
        return deps + extras["controller"] + extras["dev"]
    if name == "gpu":
        return deps + extras["gpu"]
    if name == "canary":
        return deps + extras["controller"] + [CANARY_VLLM]
    raise ValueError(f"unknown environment {name!r}: expected controller, gpu or canary")


def index_url() -> str:
    return os.environ.get(INDEX_ENV, DEFAULT_INDEX).rstrip("/")


def index_unreachable(timeout: float = 5.0) -> str | None:
    """None when the package index answers within `timeout` seconds, else why not."""
    url = f"{index_url()}/pip/"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return None if resp.status == 200 else f"{url}: HTTP {resp.status}"
    except (urllib.error.URLError, OSError) as exc:
        return f"{url}: {getattr(exc, 'reason', exc)}"


def pip_command(requirements: list[str], report: Path) -> list[str]:
    cmd = [sys.executable, "-m", "pip", "install", "--isolated", "--dry-run", "--ignore-installed",
           "--disable-pip-version-check", "--index-url", index_url(),
           # vLLM's oldest releases are sdists whose build downloads NCCL; a wheel is what a user installs
           "--only-binary", "vllm", "--report", str(report)]
    if os.environ.get("PIP_CERT"):
        cmd += ["--cert", os.environ["PIP_CERT"]]
    return cmd + requirements


def _cache_file(name: str, requirements: list[str]) -> Path:
    digest = hashlib.sha256(json.dumps([index_url(), *requirements]).encode()).hexdigest()[:16]
    return CACHE_DIR / f"{name}-{digest}.json"


def _conflict(output: str) -> str:
    """pip's explanation of a ResolutionImpossible, without its list of ignored versions."""
    keep = [line for line in output.splitlines() if line.strip() and "Ignored the following versions" not in line
            and not line.startswith(("Collecting", "  Downloading", "Downloading", "  Obtaining", "  Preparing",
                                     "  Getting", "  Installing", "  Using cached", "Looking in"))]
    start = next((i for i, line in enumerate(keep) if "conflict is caused by" in line or "Cannot install" in line), 0)
    return "\n".join(keep[start:])[-4000:]


def start(name: str, workdir: Path) -> tuple[list[str], subprocess.Popen | Resolution]:
    """Start resolving environment `name` (or return a cached answer); finish with `finish`."""
    requirements = environment(name)
    cache = _cache_file(name, requirements)
    hours = float(os.environ.get(CACHE_HOURS_ENV, "24"))
    if hours > 0 and cache.is_file() and time.time() - cache.stat().st_mtime < hours * 3600:
        data = json.loads(cache.read_text())
        return requirements, Resolution(name, tuple(requirements), data["ok"], data["versions"], data["conflict"],
                                        data["wall_s"], cached=True)
    report = workdir / f"{name}.json"
    proc = subprocess.Popen(pip_command(requirements, report), cwd=workdir, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, errors="replace")
    proc.t0 = time.perf_counter()  # type: ignore[attr-defined]
    proc.report = report  # type: ignore[attr-defined]
    return requirements, proc


def finish(name: str, requirements: list[str], started: subprocess.Popen | Resolution,
           timeout: float = 600) -> Resolution:
    if isinstance(started, Resolution):
        return started
    output, _ = started.communicate(timeout=timeout)
    wall = time.perf_counter() - started.t0  # type: ignore[attr-defined]
    report: Path = started.report  # type: ignore[attr-defined]
    if started.returncode == 0 and report.is_file():
        installs = json.loads(report.read_text())["install"]
        versions = {_normalise(i["metadata"]["name"]): i["metadata"]["version"] for i in installs}
        result = Resolution(name, tuple(requirements), True, versions, "", round(wall, 1))
    elif "ResolutionImpossible" in output or "conflicting dependencies" in output:
        result = Resolution(name, tuple(requirements), False, {}, _conflict(output), round(wall, 1))
    else:  # the network, not the requirements: never cached, never taken for an answer
        raise RuntimeError(f"pip could not resolve {name} (exit {started.returncode}):\n{output[-3000:]}")
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    _cache_file(name, requirements).write_text(json.dumps(
        {"ok": result.ok, "versions": result.versions, "conflict": result.conflict, "wall_s": result.wall_s}))
    return result


def resolve_all(names: list[str]) -> dict[str, Resolution]:
    """Resolve several environments side by side (each mostly waits on the index)."""
    with tempfile.TemporaryDirectory(prefix="r1-resolve-") as tmp:
        started = {name: start(name, Path(tmp)) for name in names}
        return {name: finish(name, reqs, proc) for name, (reqs, proc) in started.items()}


def describe(res: Resolution) -> str:
    head = f"{res.name}: " + ("resolves" if res.ok else "cannot resolve") + \
        f" ({'cached answer' if res.cached else f'{res.wall_s:.0f} s'}; {len(res.versions)} packages)"
    if not res.ok:
        return head + "\n" + res.conflict
    return head + "\n" + "\n".join(f"  {pkg} {res.versions.get(pkg, '(none)')}" for pkg in WATCHED)


def main(argv: list[str]) -> int:
    names = argv or ["controller", "gpu", "canary"]
    why = index_unreachable()
    if why:
        print(f"the package index cannot be reached ({why}); nothing resolved", file=sys.stderr)
        return 2
    for res in resolve_all(names).values():
        print(describe(res))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
