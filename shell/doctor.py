"""`r1 doctor` (make doctor): is this machine ready to run r1-pipeline, and what to do where it is not.

Checks, each reported as ok / warn / fail with the fix next to every problem:

  * versions: Python, and every pinned dependency in pyproject.toml against what is installed;
  * device: CUDA GPUs (name, memory) or CPU only, and the thread settings that matter on shared CPUs;
  * disk: free space where runs are written (R1_RUNS_DIR) against the stage margin (core.resources);
  * prefect: whether the configured Prefect server answers (none configured is fine: `r1 pipeline`
    starts a temporary one);
  * wandb: the tracking mode (offline by default) and, online, whether the W&B host is reachable;
  * sandbox: whether the code reward's kernel sandbox (bubblewrap) works here, or which mode it falls to;
  * with --recipe: the workers' environment (the interpreter of training processes: vllm, prefect,
    CUDA) and every vLLM server a GRPO stage generates on (answers /health, serves the base).

The report is printed (this is a command); a failing check makes the exit status 1.
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
import platform
import re
import socket
import sys
import tomllib
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from packaging.specifiers import SpecifierSet
from packaging.version import Version

from core import distributed, machine, resources, vllm_server
from core.runstore import PROJECT_ROOT, default_root
from stages import preflight

OK, WARN, FAIL = "ok", "warn", "fail"
WANDB_MODES = ("online", "offline", "disabled", "dryrun")
OPTIONAL = ("vllm", "deepspeed")  # used when present (GPU rollouts, ZeRO); reported, never required


@dataclass(frozen=True)
class Finding:
    check: str
    status: str  # ok | warn | fail
    detail: str
    fix: str = ""


# --- versions ----------------------------------------------------------------------------------


def pinned_requirements(pyproject: Path = PROJECT_ROOT / "pyproject.toml",
                        extras: tuple[str, ...] = ("controller",)) -> dict[str, str]:
    """name -> requirement spec of the project's dependencies and of `extras` (e.g. 'torch' -> '==2.13.0').
    The doctor runs in the controller's environment: its extra (Prefect) is checked by default."""
    project = tomllib.loads(pyproject.read_text())["project"]
    deps = list(project["dependencies"])
    for extra in extras:
        deps += project.get("optional-dependencies", {}).get(extra, [])
    out = {}
    for dep in deps:
        match = re.match(r"^\s*([A-Za-z0-9_.-]+)\s*(.*)$", dep)
        if match:
            out[match.group(1)] = match.group(2).strip()
    return out


def check_versions(pins: dict[str, str] | None = None) -> Finding:
    pins = pinned_requirements() if pins is None else pins
    found, problems = [], []
    for name, spec in pins.items():
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            problems.append(f"{name} missing (expected {spec or 'installed'})")
            continue
        # PEP 440: a local label (torch 2.13.0+cpu) satisfies ==2.13.0
        if spec and not SpecifierSet(spec).contains(Version(version), prereleases=True):
            problems.append(f"{name} {version} (expected {spec})")
        found.append(f"{name} {version}")
    for name in OPTIONAL:
        try:
            found.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            found.append(f"{name} absent (optional)")
    python = f"python {platform.python_version()}"
    if sys.version_info[:2] != (3, 11):
        problems.append(f"{python} (expected 3.11)")
    if problems:
        return Finding("versions", FAIL, "; ".join(problems),
                       "reinstall the pinned versions: make install (or .venv/bin/pip install -e '.[controller,dev]')")
    return Finding("versions", OK, ", ".join([python, *found]))


# --- device ------------------------------------------------------------------------------------


def check_device() -> Finding:
    import torch  # seconds to import: only this check needs it

    if torch.cuda.is_available():
        gpus = [torch.cuda.get_device_properties(i) for i in range(torch.cuda.device_count())]
        names = ", ".join(f"{g.name} ({g.total_memory / 2**30:.0f} GiB)" for g in gpus)
        return Finding("device", OK, f"CUDA {torch.version.cuda}: {len(gpus)} GPU(s): {names}")
    m = machine.machine()
    bf16 = f"native bfloat16 ({', '.join(m['native_bf16'])})" if m["native_bf16"] else "no native bfloat16"
    detail = (f"CPU only: {m['cpu']}, {m['capability']}, {bf16}; {m['cores']} core(s) for this process, "
              f"{os.cpu_count()} on the machine")
    return Finding("device", WARN, detail, "the pocket recipes run on CPU (each process uses the cores it may run "
                   "on); real-model recipes (bf16, vLLM) need a CUDA GPU")


def check_pretraining_dtype(recipe: Any) -> Finding:
    """The compute dtype the recipe's pocket base would pretrain in on this machine, and why."""
    if recipe.model.base != "pocket":
        return Finding("pretraining dtype", OK, f"no pocket base to pretrain (model.base: {recipe.model.base})")
    import pocket
    from core.runstore import RunStore

    choice = pocket.compute_dtype(recipe.model.pocket, RunStore().root / "cache" / "machine")
    return Finding("pretraining dtype", OK, f"the pocket base pretrains in {choice.dtype}: {choice.reason}")


# --- disk --------------------------------------------------------------------------------------


def check_disk(root: Path | None = None, comfortable: int = 10 << 30) -> Finding:
    root = root or default_root()
    try:
        margin = resources.margin_bytes()
    except ValueError as exc:
        return Finding("disk", FAIL, str(exc), f"set {resources.MARGIN_ENV} to a size such as 2G, or unset it")
    free = resources.free_bytes(root)
    detail = f"{resources.human(free)} free at {root} (every stage keeps {resources.human(margin)} free: " \
             f"{resources.MARGIN_ENV})"
    where = "free space (old runs: `r1 runs`, then remove runs/<id>), or point R1_RUNS_DIR at a larger disk"
    if free < margin + resources.SMALL_STAGE_BYTES:
        return Finding("disk", FAIL, detail + "; no stage can start", where)
    if free < comfortable:
        return Finding("disk", WARN, detail + f"; below {resources.human(comfortable)}, a real-model run "
                       "(merged model, checkpoints) may not fit", where)
    return Finding("disk", OK, detail)


# --- prefect -----------------------------------------------------------------------------------


def prefect_api_url() -> tuple[str | None, str]:
    """(the Prefect API URL flows will use, where it is set): the environment, else the PREFECT_HOME
    profile (`make serve` writes it there); None when runs start a temporary server."""
    if os.environ.get("PREFECT_API_URL"):
        return os.environ["PREFECT_API_URL"], "PREFECT_API_URL"
    home = Path(os.environ.get("PREFECT_HOME", PROJECT_ROOT / ".prefect"))
    profiles = home / "profiles.toml"
    try:
        data = tomllib.loads(profiles.read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return None, ""
    active = os.environ.get("PREFECT_PROFILE") or data.get("active", "ephemeral")
    url = data.get("profiles", {}).get(active, {}).get("PREFECT_API_URL")
    return (url, f"profile {active!r} in {profiles}") if url else (None, "")


def _answers(url: str, timeout: float) -> str | None:
    """None when GET url answers 200, else why not."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return None if resp.status == 200 else f"HTTP {resp.status}"
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        return str(getattr(exc, "reason", exc))


def check_prefect(timeout: float = 3.0) -> Finding:
    url, where = prefect_api_url()
    if url is None:
        return Finding("prefect", OK, "no server configured: `r1 pipeline` runs each flow with a temporary "
                       "local server (`make serve` for the UI, deployments and a worker)")
    why = _answers(url.rstrip("/") + "/health", timeout)
    if why is None:
        return Finding("prefect", OK, f"server answers at {url} (from {where})")
    return Finding("prefect", FAIL, f"server at {url} (from {where}) does not answer: {why}",
                   "start it with `make serve`, or stop pointing at it (`make stop`, or unset PREFECT_API_URL) "
                   "so runs use a temporary server")


# --- wandb -------------------------------------------------------------------------------------


def _reachable(url: str, timeout: float) -> str | None:
    parts = urlparse(url)
    host, port = parts.hostname or url, parts.port or (443 if parts.scheme != "http" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as exc:
        return f"{host}:{port}: {exc}"


def check_wandb(timeout: float = 3.0) -> Finding:
    mode = os.environ.get("WANDB_MODE", "offline")  # the project's default (Makefile, core.tracking)
    if mode not in WANDB_MODES:
        return Finding("wandb", FAIL, f"WANDB_MODE={mode!r} is not a W&B mode",
                       f"set WANDB_MODE to one of {', '.join(WANDB_MODES)} (offline: sync later)")
    if mode in ("offline", "dryrun"):
        return Finding("wandb", OK, f"{mode}: runs are written under runs/<run_id>/wandb/; upload later with "
                       "`wandb sync runs/<run_id>/wandb/offline-run-*`")
    if mode == "disabled":
        return Finding("wandb", WARN, "disabled: stages are not tracked in W&B",
                       "WANDB_MODE=offline keeps a local record to sync later")
    base = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")
    why = _reachable(base, timeout)
    if why is None:
        return Finding("wandb", OK, f"online: {base} is reachable (inputs are use_artifact-ed: lineage graph)")
    return Finding("wandb", FAIL, f"online, but {base} is not reachable ({why})",
                   "set WANDB_MODE=offline and `wandb sync` the runs once the network is back")


# --- sandbox -----------------------------------------------------------------------------------


def check_sandbox() -> Finding:
    from rewards import sandbox

    info = sandbox.describe("kernel")
    if info["available"]:
        return Finding("sandbox", OK, f"kernel (bubblewrap: own user/mount/PID/network namespaces), interpreter "
                       f"{info['interpreter']}, runs as uid {info['runs_as_uid']}")
    return Finding("sandbox", WARN, f"no kernel sandbox: {info['reason']}",
                   "only recipes with the code reward need it; they refuse to run until bubblewrap works, "
                   "or until the reward's params say `sandbox: process` (weaker: host files readable)")


# --- a recipe's workers and vLLM servers (r1 doctor --recipe X) -------------------------------------


def check_workers(recipe: Any) -> Finding:
    """The interpreter that runs the recipe's training processes: the GPU environment when one is set."""
    python = distributed.worker_python(recipe.distributed)
    if not distributed.should_launch_python(python):
        return Finding("workers", OK, f"training runs in this environment ({python}); a GPU environment: "
                       f"make install-gpu, then {distributed.PYTHON_ENV}=$PWD/.venv-gpu/bin/python")
    info = vllm_server.probe_interpreter(python)
    if "error" in info:
        return Finding("workers", FAIL, f"the workers' interpreter cannot run: {info['error']}",
                       f"make install-gpu, or point {distributed.PYTHON_ENV} / distributed.python at a working one")
    detail = (f"{python}: vllm {'yes' if info['vllm'] else 'no'}, prefect {'yes' if info['prefect'] else 'no'}, "
              f"CUDA {'yes' if info['cuda'] else 'no'}")
    grpo_vllm = any(cfg.use_vllm for cfg in preflight.sections(recipe, "grpo").values())
    if grpo_vllm and not (info["vllm"] and info["cuda"]):
        return Finding("workers", WARN, detail + "; the recipe's use_vllm stages will fall back to HF generate",
                       "run the workers where vLLM and a GPU are (make install-gpu on the GPU host)")
    return Finding("workers", OK, detail)


def check_vllm_servers(recipe: Any) -> Finding:
    """Every GRPO stage in server mode: does its server answer, and serve the recipe's base?"""
    found = preflight.server_findings(recipe)
    if not found:
        return Finding("vllm server", OK, "no GRPO stage generates on a vLLM server (vllm_mode: server)")
    bad = [f"{key}: {msg}" for key, ok, msg in found if not ok]
    if bad:
        return Finding("vllm server", FAIL, "; ".join(bad),
                       "start it first (VLLM_SERVER_DEV_MODE=1 vllm serve <base> --weight-transfer-config "
                       "'{\"backend\": \"nccl\"}' ...; docs/scale-out.md), or fix the stage's vllm_server settings")
    return Finding("vllm server", OK, "; ".join(f"{key}: {msg}" for key, _, msg in found))


def recipe_checks(recipe: Any) -> tuple[Callable[[], Finding], ...]:
    """The checks that need a recipe: the pocket base's pretraining dtype, the workers' environment
    and the vLLM servers."""
    return (functools.partial(check_pretraining_dtype, recipe), functools.partial(check_workers, recipe),
            functools.partial(check_vllm_servers, recipe))


# --- the report --------------------------------------------------------------------------------


CHECKS: tuple[Callable[[], Finding], ...] = (check_versions, check_device, check_disk, check_prefect, check_wandb,
                                             check_sandbox)


def run_checks(checks: tuple[Callable[[], Finding], ...] = CHECKS) -> list[Finding]:
    """Every check; one that raises is itself reported as a failure (the doctor never crashes)."""
    out = []
    for check in checks:
        try:
            out.append(check())
        except Exception as exc:
            name = getattr(check, "__name__", getattr(check, "func", check).__name__).removeprefix("check_")
            out.append(Finding(name, FAIL, f"the check itself failed: {type(exc).__name__}: {exc}",
                               "make install, then rerun `r1 doctor`"))
    return out


def format_report(findings: list[Finding]) -> str:
    width = max(len(f.check) for f in findings)
    lines = ["r1 doctor", ""]
    lines += [f"  {f.check:<{width}}  {f.status:<4}  {f.detail}" for f in findings]
    todo = [f for f in findings if f.fix]
    if todo:
        lines += ["", "what to do:"] + [f"  {f.check} ({f.status}): {f.fix}" for f in todo]
    failed = sum(f.status == FAIL for f in findings)
    lines += ["", f"{failed} problem(s) to fix" if failed else "ready to run"]
    return "\n".join(lines)


def exit_status(findings: list[Finding]) -> int:
    return 1 if any(f.status == FAIL for f in findings) else 0
