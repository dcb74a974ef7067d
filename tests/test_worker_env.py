"""The GPU workers' side without Prefect, and work sent to another interpreter (the GPU environment,
$R1_WORKER_PYTHON / distributed.python): a trainer through the launched worker, isolated GPU work
through `python -m core.devices`. "Another interpreter" here is a wrapper script around this one; the
real Prefect-less environment was checked by hand (docs/scale-out.md, "What was verified")."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from core import devices, distributed
from core.config import DistributedConfig, load_recipe

ROOT = Path(__file__).resolve().parent.parent
TEST_RECIPE = ROOT / "configs" / "pocket-test.yaml"
# everything a GPU worker runs: the node launcher, the worker, the isolated call, every stage
WORKER_MODULES = ["core.distributed", "core.distributed_worker", "core.devices", "core.vllm_server", "core.trainers",
                  "stages.graph", "stages.grpo", "stages.sft", "stages.sampling", "stages.evaluation",
                  "stages.rejection_sampling", "stages.preflight"]


def test_the_worker_side_imports_without_prefect():
    blocker = ("import sys\n"
               "class NoPrefect:\n"
               "    def find_spec(self, name, path=None, target=None):\n"
               "        if name == 'prefect' or name.startswith('prefect.'):\n"
               "            raise ImportError('prefect is not in the GPU environment')\n"
               "sys.meta_path.insert(0, NoPrefect())\n"
               f"import {', '.join(WORKER_MODULES)}\n"
               "print('ok')\n")
    out = subprocess.run([sys.executable, "-c", blocker], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.splitlines()[-1] == "ok", out.stderr[-3000:]


@pytest.fixture
def other_python(tmp_path, monkeypatch):
    """An interpreter that is not this process's (a wrapper around it) that marks its processes."""
    wrapper = tmp_path / "gpu-env" / "bin" / "python"
    wrapper.parent.mkdir(parents=True)
    wrapper.write_text(f"#!/bin/sh\nR1_TEST_OTHER_PYTHON=1 exec {sys.executable} \"$@\"\n")
    wrapper.chmod(0o755)
    for name in (distributed.PYTHON_ENV, distributed.WORKER_ENV, "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    return str(wrapper)


def _where() -> tuple[int, str | None, str | None, str | None]:
    return os.getpid(), os.environ.get("R1_TEST_OTHER_PYTHON"), os.environ.get(devices.VISIBLE), \
        os.environ.get(devices.WORKER_ENV)


def _fails() -> None:
    raise ValueError("raised in the other interpreter")


def test_isolated_gpu_work_runs_in_the_workers_interpreter(other_python, monkeypatch):
    monkeypatch.setattr(devices, "gpu_count", lambda: 2)
    monkeypatch.setenv(devices.VISIBLE, "4,5")
    monkeypatch.setenv("PYTHONPATH", str(ROOT / "tests"))  # where the called functions live, here
    with devices.placement(DistributedConfig(python=other_python)):
        pid, marked, visible, worker = devices.run_isolated(_where)
        with pytest.raises(ValueError, match="other interpreter"):
            devices.run_isolated(_fails)
    assert pid != os.getpid() and marked == "1"
    assert visible == "4"  # one GPU of the two
    assert worker == "1"  # it works in place, never isolates or launches again


def test_a_trainer_runs_in_the_workers_interpreter_with_the_same_result(pocket_run, other_python, monkeypatch):
    """One SFT stage here and the same one through `python -m core.distributed_worker` in another
    interpreter: the same files and the same loss (both on this CPU, one process)."""
    from stages import runner

    store, _, task_data_ref, base_ref = pocket_run
    recipe = load_recipe(TEST_RECIPE, ["cold_start.steps=2"])
    inputs = {"task_data": task_data_ref, "base": base_ref}
    here = store.new_run_id("trainer-here")
    runner.build(["cold_start"], recipe, store, here, inputs)
    monkeypatch.setenv(distributed.PYTHON_ENV, other_python)
    there = store.new_run_id("trainer-there")
    runner.build(["cold_start"], recipe, store, there, inputs)
    one, two = store.manifest(here, "cold_start"), store.manifest(there, "cold_start")
    assert "num_processes" not in one["metrics"] and two["metrics"]["num_processes"] == 1  # the worker's mark
    assert set(one["outputs"]) == set(two["outputs"])
    assert two["metrics"]["train_loss"] == pytest.approx(one["metrics"]["train_loss"], abs=1e-6)
    assert store.verify(two) == []
