"""Multi-process training: a stage's trainer run under `accelerate launch` with N processes.

`train_sft` / `train_grpo` (core/trainers.py) hand their arguments to `launch()` when the stage's
`num_processes` is above 1. `launch()` writes them to <work>/.distributed/ (a JSON spec, the
dataset on disk, a pickle of the reward functions and trainer callbacks where given), then runs

    accelerate launch --multi_gpu --num_processes N [--config_file F] -m core.distributed_worker SPEC

Every process rebuilds the same trainer from the spec and trains one DDP replica (NCCL on GPUs,
gloo on CPU: the trainer runs with `use_cpu` when no GPU is there). Rank 0 alone writes the adapter,
the log history and the result; the parent reads the result back and removes .distributed/, so the
stage directory holds the same files as a single-process run. With 1 process nothing of this runs.

`R1_ACCELERATE_CONFIG` names an accelerate config (configs/accelerate/*.yaml: DeepSpeed ZeRO-2/3,
FSDP) for GPU hosts; without it the launch is plain DDP.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import pickle
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any, Literal

from core import processes

log = logging.getLogger(__name__)

WORKER_ENV = "R1_DISTRIBUTED_WORKER"  # set in launched processes: they train, they never launch again
CONFIG_ENV = "R1_ACCELERATE_CONFIG"
SPEC_DIR = ".distributed"
WORKER_MODULE = "core.distributed_worker"  # what every launched process runs (python -m)
PROJECT_ROOT = Path(__file__).resolve().parent.parent

Kind = Literal["sft", "grpo"]


class DistributedError(RuntimeError):
    """A launched training failed; the message carries the end of its output."""


def inside_launch() -> bool:
    """True in a process started by `accelerate launch`/torchrun (ours or the user's): train here."""
    return os.environ.get(WORKER_ENV) == "1" or int(os.environ.get("WORLD_SIZE", "1")) > 1


def should_launch(num_processes: int) -> bool:
    return num_processes > 1 and not inside_launch()


def _free_port() -> int:
    # A fixed port would collide with another launch on the same host (parallel tests, two stages).
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def accelerate_command(num_processes: int, spec: Path, config_file: str | None = None) -> list[str]:
    """The `accelerate launch` command line that runs the worker on `spec` with N processes."""
    config_file = config_file or os.environ.get(CONFIG_ENV)
    cmd = [sys.executable, "-m", "accelerate.commands.launch"]
    if config_file:
        if not Path(config_file).is_file():
            raise DistributedError(f"{CONFIG_ENV}={config_file}: accelerate config file not found")
        cmd += ["--config_file", config_file]
    else:
        # --multi_gpu selects the torchrun launcher; on a CPU-only host the trainer's use_cpu turns it
        # into gloo DDP (accelerate's own --cpu launches a single process unless MPI is set up).
        cmd += ["--multi_gpu", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    cmd += ["--num_processes", str(num_processes), "--main_process_port", str(_free_port()),
            "-m", WORKER_MODULE, str(spec)]
    return cmd


def launch(kind: Kind, *, num_processes: int, base: str, adapter: Path | None, lora: Any, dtype: str,
           dataset: Any, cfg: Any, work: Path, seed: int, reward_funcs: Any = None,
           reward_weights: Any = None, callbacks: Any = (), eos_token: str | None = None) -> dict[str, Any]:
    """Train under `accelerate launch` with `num_processes` processes; the same metrics as in-process.

    Callbacks run in every process (DDP needs each rank to take the same stop decisions); after
    training the parent's callback objects get rank 0's state, so a stage reads them as usual.
    """
    spec_dir = Path(work) / SPEC_DIR
    spec_dir.mkdir(parents=True, exist_ok=True)
    dataset.save_to_disk(str(spec_dir / "dataset"))
    objects = {"reward_funcs": reward_funcs, "callbacks": list(callbacks)}
    has_objects = reward_funcs is not None or bool(objects["callbacks"])
    if has_objects:
        try:
            (spec_dir / "objects.pkl").write_bytes(pickle.dumps(objects))
        except (pickle.PicklingError, AttributeError, TypeError) as exc:
            raise DistributedError(f"num_processes={num_processes}: the trainer callbacks / reward functions must "
                                   f"be picklable to reach the launched processes ({exc})") from None
    spec = {
        "kind": kind, "base": str(base), "adapter": str(adapter) if adapter else None,
        "lora": lora.model_dump(mode="json"), "dtype": dtype,
        "cfg_class": type(cfg).__name__, "cfg": cfg.model_dump(mode="json"),
        "work": str(work), "seed": seed, "reward_weights": reward_weights, "eos_token": eos_token,
        "dataset": str(spec_dir / "dataset"), "objects": str(spec_dir / "objects.pkl") if has_objects else None,
        "result": str(spec_dir / "result.json"), "state": str(spec_dir / "callbacks.pkl"),
    }
    spec_path = spec_dir / "spec.json"
    spec_path.write_text(json.dumps(spec, indent=1))
    cmd = accelerate_command(num_processes, spec_path)
    env = {**os.environ, WORKER_ENV: "1", "PYTHONPATH": os.pathsep.join(
        [str(PROJECT_ROOT)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []))}
    log.info("%s: training with %d processes: %s", work, num_processes, " ".join(cmd))
    _run(cmd, env)
    result = json.loads((spec_dir / "result.json").read_text())
    if has_objects and (spec_dir / "callbacks.pkl").is_file():
        for mine, theirs in zip(objects["callbacks"], pickle.loads((spec_dir / "callbacks.pkl").read_bytes()),
                                strict=True):
            mine.__dict__.update(theirs.__dict__)
    shutil.rmtree(spec_dir)  # the stage directory must hold what a 1-process run writes, nothing more
    return result["metrics"]


def _run(cmd: list[str], env: dict[str, str]) -> None:
    """Run the launcher, streaming its output through; fail with the output's end on an error."""
    tail: collections.deque[str] = collections.deque(maxlen=40)
    with subprocess.Popen(cmd, env=env, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, errors="replace") as proc:
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                sys.stderr.write(line)
                tail.append(line)
        except BaseException:
            # An interrupt of this process alone (SIGINT or SIGTERM to its pid: KeyboardInterrupt here)
            # must stop the launcher and its trainers too; Popen's exit would wait for them to finish.
            _stop_tree(proc.pid)
            raise
    if proc.returncode:
        raise DistributedError(f"`accelerate launch` exited with {proc.returncode}; last output:\n"
                               + "".join(tail))


def _stop_tree(pid: int, grace_s: float = 10) -> None:
    """SIGTERM a process and its descendants, SIGKILL those still alive after `grace_s`."""
    import psutil  # only on an interrupt

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    processes.stop(procs, grace_s)
