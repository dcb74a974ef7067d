"""GPU placement: a single-process stage gets one GPU whatever the host shows, in a process of its own.

Two reasons to train or sample with vLLM in a fresh process rather than in the pipeline's:
  * with several GPUs visible, transformers' Trainer counts them all and wraps the model in
    nn.DataParallel, which GRPOTrainer refuses; a child that sees only the first GPU trains as on a
    one-GPU host (stages with num_processes > 1 go through `accelerate launch` and get all of them);
  * TRL's colocated vLLM engine is never torn down and TRL writes RANK / LOCAL_RANK / WORLD_SIZE into
    the environment; both end with the child, so the next stage finds the GPU free and the process
    not distributed. vLLM's own teardown does not reliably give the memory back either.
On a host without a GPU nothing of this runs: stages work in the calling process, as before.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
VISIBLE = "CUDA_VISIBLE_DEVICES"
WORKER_ENV = "R1_DISTRIBUTED_WORKER"  # set in launched processes (core/distributed.py): they train, never launch


def inside_launch() -> bool:
    """True in a process started by `accelerate launch`/torchrun (ours or the user's) or by our own
    worker launch: train here."""
    return os.environ.get(WORKER_ENV) == "1" or int(os.environ.get("WORLD_SIZE", "1")) > 1


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
