"""One process of a launched training (`accelerate launch ... -m core.distributed_worker SPEC`):
rebuild the trainer from the spec that core/distributed.py wrote and train this process's replica;
rank 0 writes the result and the callbacks' state for the parent to read back."""

from __future__ import annotations

import json
import logging
import pickle
import sys
from pathlib import Path

import datasets
from accelerate import PartialState

from core import config as schema
from core.trainers import train_grpo, train_sft


def worker(spec_path: Path) -> None:
    """Train this process's replica as the spec says; rank 0 writes the result."""
    spec = json.loads(spec_path.read_text())
    cfg = getattr(schema, spec["cfg_class"]).model_validate(spec["cfg"])
    objects = pickle.loads(Path(spec["objects"]).read_bytes()) if spec["objects"] else {}
    kwargs = {"base": spec["base"], "adapter": Path(spec["adapter"]) if spec["adapter"] else None,
              "lora": schema.LoraSettings.model_validate(spec["lora"]), "dtype": spec["dtype"],
              "dataset": datasets.load_from_disk(spec["dataset"]), "cfg": cfg, "work": Path(spec["work"]),
              "seed": spec["seed"], "report_to": "none", "eos_token": spec.get("eos_token")}
    callbacks = objects.get("callbacks", [])
    if spec["kind"] == "sft":
        metrics = train_sft(**kwargs)
    else:
        metrics = train_grpo(**kwargs, reward_funcs=objects["reward_funcs"], reward_weights=spec["reward_weights"],
                             callbacks=callbacks)
    state = PartialState()
    if state.is_main_process:
        metrics["num_processes"] = state.num_processes
        metrics["distributed_backend"] = state.backend
        metrics["num_machines"] = spec.get("placement", {}).get("num_machines", 1)
        Path(spec["result"]).write_text(json.dumps({"metrics": metrics}, default=str))
        if callbacks:
            Path(spec["state"]).write_bytes(pickle.dumps(callbacks))
    state.wait_for_everyone()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    if len(sys.argv) != 2:
        sys.exit("usage: accelerate launch ... -m core.distributed_worker <work>/.distributed/spec.json")
    worker(Path(sys.argv[1]))
