"""GPU placement: a single-process stage gets one GPU whatever the host shows, in a process of its own.

Two reasons to train or sample with vLLM in a fresh process rather than in the pipeline's:
  * with several GPUs visible, transformers' Trainer counts them all and wraps the model in
    nn.DataParallel, which GRPOTrainer refuses; a child that sees only the first GPU trains as on a
    one-GPU host (stages with num_processes > 1 go through `accelerate launch` and get all of them);
  * TRL's colocated vLLM engine is never torn down and TRL writes RANK / LOCAL_RANK / WORLD_SIZE into
    the environment; both end with the child, so the next stage finds the GPU free and the process
    not distributed. vLLM's own teardown does not reliably give the memory back either.
On a host without a GPU nothing of this runs: stages work in the calling process, as before.

With a GPU environment (`$R1_WORKER_PYTHON` or the recipe's `distributed.python` naming another
interpreter: vLLM, no Prefect), that child is a process of that interpreter (`python -m core.devices`),
so rejection sampling, evaluation and every trainer use the GPU environment's libraries.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import multiprocessing
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from core.config import DistributedConfig

T = TypeVar("T")
VISIBLE = "CUDA_VISIBLE_DEVICES"
WORKER_ENV = "R1_DISTRIBUTED_WORKER"  # set in launched processes (core/distributed.py): they train, never launch
PYTHON_ENV = "R1_WORKER_PYTHON"  # the interpreter of training and GPU processes (the GPU environment)
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def inside_launch() -> bool:
    """True in a process started by `accelerate launch`/torchrun (ours or the user's) or by our own
    worker launch: train here."""
    return os.environ.get(WORKER_ENV) == "1" or int(os.environ.get("WORLD_SIZE", "1")) > 1


# --- where launched and isolated work runs: the recipe's `distributed:` section -------------------

_PLACEMENT: contextvars.ContextVar[DistributedConfig | None] = contextvars.ContextVar("r1_placement", default=None)


@contextlib.contextmanager
def placement(cfg: DistributedConfig | None) -> Iterator[None]:
    """Make `cfg` (a recipe's `distributed:` section) where launched and isolated work runs, for this
    block (stages/runner.py: around each stage)."""
    token = _PLACEMENT.set(cfg)
    try:
        yield
    finally:
        _PLACEMENT.reset(token)


def current_placement() -> DistributedConfig:
    return _PLACEMENT.get() or DistributedConfig()


def worker_python(cfg: DistributedConfig | None = None) -> str:
    """The interpreter of training and GPU processes: $R1_WORKER_PYTHON, the recipe's, or ours."""
    cfg = cfg or current_placement()
    return os.environ.get(PYTHON_ENV) or cfg.python or sys.executable


def other_interpreter(python: str) -> bool:
    """Whether `python` is another interpreter than this process's (the GPU environment's)."""
    # not resolved through symlinks: two venvs' bin/python link to the same system interpreter
    return os.path.abspath(shutil.which(python) or python) != os.path.abspath(sys.executable)


def worker_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of launched processes: they work and never launch again; this checkout first."""
    env = dict(os.environ if env is None else env)
    return {**env, WORKER_ENV: "1", "PYTHONPATH": os.pathsep.join(
        [str(PROJECT_ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))}


def gpu_count() -> int:
    """GPUs this process can see (0 without CUDA)."""
    import torch  # seconds to import: only when a stage asks

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def one_gpu_env(env: dict[str, str], count: int) -> dict[str, str]:
    """`env` narrowed to the first of `count` visible GPUs (unchanged with one GPU or none)."""
    if count <= 1:
        return dict(env)
    visible = [d.strip() for d in env.get(VISIBLE, "").split(",") if d.strip()]
    return {**env, VISIBLE: visible[0] if visible else "0"}


def _enter(env: dict[str, str]) -> None:
    # runs in the child before any of its imports touches CUDA: the device list is read once
    os.environ.clear()
    os.environ.update(env)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")  # a spawned child starts with no logging set up


def run_isolated(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """fn(*args, **kwargs) in a fresh process that sees one GPU; its result (pickled) back here.
    `fn`, its arguments and its result must pickle (module-level functions, plain data)."""
    env = one_gpu_env(dict(os.environ), gpu_count())
    python = worker_python()
    if other_interpreter(python):  # the GPU environment (vLLM, no Prefect): a process of that interpreter
        return _run_in(python, env, fn, args, kwargs)
    # spawn, not fork: a forked child inherits a CUDA context it cannot use
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context, initializer=_enter, initargs=(env,)) as pool:
        return pool.submit(fn, *args, **kwargs).result()


def should_isolate() -> bool:
    """Whether GPU work should run in a child: on a GPU host, unless this process is already one
    launched for the purpose (`accelerate launch` or our own child)."""
    return not inside_launch() and multiprocessing.parent_process() is None and gpu_count() > 0


def on_one_gpu(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """fn(*args, **kwargs) in a process of its own on a GPU host (run_isolated), here otherwise. What
    the pipeline's own process keeps of CUDA (cached allocations, vLLM engines) would be taken from
    the next stage's share of the GPU; a child gives all of it back when it ends."""
    return run_isolated(fn, *args, **kwargs) if should_isolate() else fn(*args, **kwargs)


def _run_in(python: str, env: dict[str, str], fn: Callable[..., T], args: Any, kwargs: Any) -> T:
    """fn(*args, **kwargs) in `python -m core.devices CALL RESULT`: multiprocessing's spawn would import
    this process's __main__ there (the CLI, which needs Prefect); a pickle file does not."""
    with tempfile.TemporaryDirectory(prefix="r1-isolated-") as tmp:
        call, result = Path(tmp) / "call.pkl", Path(tmp) / "result.pkl"
        call.write_bytes(pickle.dumps((fn, args, kwargs)))
        proc = subprocess.run([python, "-m", "core.devices", str(call), str(result)], env=worker_env(env),
                              cwd=PROJECT_ROOT)
        if not result.is_file():
            raise RuntimeError(f"{python} -m core.devices exited with {proc.returncode} before returning "
                               f"{getattr(fn, '__qualname__', fn)}'s result (its output is above)")
        ok, value = pickle.loads(result.read_bytes())
        if not ok:
            raise value
        return value


if __name__ == "__main__":  # one isolated call in another interpreter (_run_in)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    fn, call_args, call_kwargs = pickle.loads(Path(sys.argv[1]).read_bytes())
    try:
        outcome: tuple[bool, Any] = (True, fn(*call_args, **call_kwargs))
    except Exception as exc:  # travels back and is raised in the caller, as a ProcessPoolExecutor does
        outcome = (False, exc)
    Path(sys.argv[2]).write_bytes(pickle.dumps(outcome))
