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

Where it runs comes from the recipe's `distributed:` section (core.config.DistributedConfig), which
the runner makes current for each stage (`placement`, in stages/runner.py):

  * the interpreter: `$R1_WORKER_PYTHON`, else `distributed.python`, else this process's own. When it
    is another one (the GPU environment, with vLLM and no Prefect), single-process stages run through
    the same worker too (`python -m core.distributed_worker SPEC`, one GPU visible);
  * several machines (`num_machines` > 1): the spec records the placement and `distributed.submit`
    starts the gang job, which runs `python -m core.distributed SPEC` on every machine (this module's
    main). Each builds the same `accelerate launch` command (c10d rendezvous at main_process_ip:
    main_process_port, num_processes / num_machines processes per machine), its `--machine_rank` from
    `$R1_MACHINE_RANK`. The run directory must be shared: the spec, the dataset and the result live there.
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

from core import devices, processes
from core.config import DistributedConfig

# where launched work runs lives in core.devices (which isolated work shares); this module's API too
from core.devices import (  # noqa: F401
    PYTHON_ENV,
    WORKER_ENV,
    current_placement,
    inside_launch,
    other_interpreter,
    placement,
    worker_env,
    worker_python,
)

log = logging.getLogger(__name__)

CONFIG_ENV = "R1_ACCELERATE_CONFIG"
MACHINE_RANK_ENV = "R1_MACHINE_RANK"  # set by the gang job on each machine (Slurm: $SLURM_NODEID)
SPEC_DIR = ".distributed"
WORKER_MODULE = "core.distributed_worker"  # what every launched process runs (python -m)
PROJECT_ROOT = Path(__file__).resolve().parent.parent

Kind = Literal["sft", "grpo"]


class DistributedError(RuntimeError):
    """A launched training failed; the message carries the end of its output."""


def should_launch_python(python: str) -> bool:
    """Whether training processes run by `python` are launched apart (another interpreter than ours)."""
    return other_interpreter(python)


def should_launch(num_processes: int) -> bool:
    """Whether the trainer runs in launched processes: several of them, or another interpreter's."""
    if inside_launch():
        return False
    return num_processes > 1 or other_interpreter(worker_python())


def machine_rank(cfg: DistributedConfig | None = None) -> int:
    cfg = cfg or current_placement()
    if cfg.machine_rank is not None:
        return cfg.machine_rank
    raw = os.environ.get(MACHINE_RANK_ENV, "0")
    try:
        rank = int(raw)
    except ValueError:
        raise DistributedError(f"{MACHINE_RANK_ENV}={raw!r}: expected this machine's rank, 0 to "
                               f"{cfg.num_machines - 1}") from None
    if not 0 <= rank < cfg.num_machines:
        raise DistributedError(f"{MACHINE_RANK_ENV}={rank}: expected 0 to {cfg.num_machines - 1} "
                               f"(distributed.num_machines {cfg.num_machines})")
    return rank


def _free_port() -> int:
    # A fixed port would collide with another launch on the same host (parallel tests, two stages).
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def accelerate_command(num_processes: int, spec: Path, config_file: str | None = None, *,
                       cfg: DistributedConfig | None = None, rank: int = 0, python: str | None = None) -> list[str]:
    """The `accelerate launch` command line that runs the worker on `spec` with N processes in all;
    with `cfg.num_machines` > 1, this machine's share of them (the same line on every machine but
    for `rank`)."""
    cfg = cfg or DistributedConfig()
    config_file = config_file or os.environ.get(CONFIG_ENV)
    cmd = [python or sys.executable, "-m", "accelerate.commands.launch"]
    if config_file:
        if not Path(config_file).is_file():
            raise DistributedError(f"{CONFIG_ENV}={config_file}: accelerate config file not found")
        cmd += ["--config_file", config_file]
    else:
        # --multi_gpu selects the torchrun launcher; on a CPU-only host the trainer's use_cpu turns it
        # into gloo DDP (accelerate's own --cpu launches a single process unless MPI is set up).
        cmd += ["--multi_gpu", "--mixed_precision", "no", "--dynamo_backend", "no"]
    if cfg.num_machines > 1:
        if num_processes % cfg.num_machines:
            raise DistributedError(f"num_processes {num_processes} does not divide over distributed.num_machines "
                                   f"{cfg.num_machines}: every machine runs the same number of processes")
        # c10d: torchrun's agents meet at machine 0's store and are given their ranks as they join
        cmd += ["--num_machines", str(cfg.num_machines), "--machine_rank", str(rank),
                "--main_process_ip", str(cfg.main_process_ip), "--main_process_port", str(cfg.main_process_port),
                "--rdzv_backend", cfg.rdzv_backend]
        if cfg.rdzv_backend == "c10d":
            # machine 0 hosts the rendezvous store; torch's guess (does the endpoint name this host?) is
            # wrong when two machines share an address (loopback) or the endpoint is a CNAME
            cmd += ["--rdzv_conf", f"is_host={int(rank == 0)}"]
    else:
        cmd += ["--num_machines", "1", "--main_process_port", str(cfg.main_process_port or _free_port())]
    cmd += ["--num_processes", str(num_processes), "-m", WORKER_MODULE, str(spec)]
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
    where = current_placement()
    machines = where.num_machines if num_processes > 1 else 1
    spec["placement"] = {**where.model_dump(mode="json"), "num_machines": machines, "num_processes": num_processes,
                         "config_file": os.environ.get(CONFIG_ENV)}
    spec_path = spec_dir / "spec.json"
    spec_path.write_text(json.dumps(spec, indent=1))
    python = worker_python(where)
    if machines > 1:  # the gang job runs `python -m core.distributed SPEC` on every machine
        cmd = ["/bin/sh", "-c", str(where.submit).format(spec=spec_path, python=python, num_machines=machines,
                                                          num_processes=num_processes)]
        log.info("%s: training with %d processes on %d machines: %s", work, num_processes, machines, cmd[-1])
        _run(cmd, worker_env())
    elif num_processes > 1:
        cmd = accelerate_command(num_processes, spec_path, python=python)
        log.info("%s: training with %d processes: %s", work, num_processes, " ".join(cmd))
        _run(cmd, worker_env())
    else:  # another interpreter (the GPU environment), one process on one GPU
        cmd = [python, "-m", WORKER_MODULE, str(spec_path)]
        log.info("%s: training in %s", work, " ".join(cmd))
        _run(cmd, devices.one_gpu_env(worker_env(), devices.gpu_count()))
    if not (spec_dir / "result.json").is_file():
        raise DistributedError(f"{' '.join(cmd)} ended without a result ({spec_dir / 'result.json'}): did every "
                               "machine see the run directory (a shared volume)?")
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


def run_node(spec_path: Path) -> None:
    """One machine's share of a multi-machine launch: `python -m core.distributed SPEC`, run by the gang
    job on every machine with $R1_MACHINE_RANK set; the same command line on each but for the rank."""
    spec = json.loads(Path(spec_path).read_text())
    where = spec["placement"]
    cfg = DistributedConfig.model_validate({k: v for k, v in where.items() if k in DistributedConfig.model_fields})
    rank = machine_rank(cfg)
    cmd = accelerate_command(where["num_processes"], Path(spec_path), where.get("config_file"), cfg=cfg, rank=rank)
    log.info("machine %d of %d: %s", rank, cfg.num_machines, " ".join(cmd))
    _run(cmd, worker_env())


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    if len(sys.argv) != 2:
        sys.exit(f"usage: {MACHINE_RANK_ENV}=<rank> python -m core.distributed <run dir>/<stage work>/.distributed/"
                 "spec.json   (on every machine of the stage's gang job)")
    try:
        run_node(Path(sys.argv[1]))
    except DistributedError as exc:
        sys.exit(str(exc))
