"""Two "machines" on loopback: the reasoning-RL and SFT stages (one step each) over 2 processes on 2
machines, 1 process each, with c10d rendezvous at a fixed port. The recipe's `distributed.submit` is
the gang job: it starts the node launcher (`python -m core.distributed SPEC`) twice, with
R1_MACHINE_RANK 0 and 1, as Slurm would on two nodes. Checked against one machine, one process, as
tests/test_distributed.py checks two processes against one."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from core import distributed
from core.config import DistributedConfig, parse_recipe
from core.modeling import ADAPTER

TEST_RECIPE = Path(__file__).resolve().parent.parent / "configs" / "pocket-test.yaml"
# what a gang job does on each machine: the same command, its own rank (Slurm: R1_MACHINE_RANK=$SLURM_NODEID)
LOOPBACK_GANG = ("R1_MACHINE_RANK=0 {python} -m core.distributed {spec} & m0=$!; "
                 "R1_MACHINE_RANK=1 {python} -m core.distributed {spec} & m1=$!; "
                 "wait $m0; r0=$?; wait $m1; r1=$?; exit $((r0 | r1))")
LOSS_TOLERANCE = {"reasoning_rl": 0.1, "sft": 0.5}


def recipe(**distributed_section):
    data = yaml.safe_load(TEST_RECIPE.read_text())
    for stage in ("reasoning_rl", "sft"):
        data[stage] = {**data[stage], "steps": 1, "num_processes": 2 if distributed_section else 1}
    if distributed_section:
        data["distributed"] = distributed_section
    return parse_recipe(data, str(TEST_RECIPE))


@pytest.fixture(scope="module")
def one_machine_and_two(pocket_run):
    from stages import runner

    store, _, task_data_ref, base_ref = pocket_run
    one = recipe()
    two = recipe(num_machines=2, main_process_ip="127.0.0.1", main_process_port=distributed._free_port(),
                 submit=LOOPBACK_GANG)
    runs = {}
    run1 = store.new_run_id("one-machine")
    refs = runner.build(["reasoning_rl"], one, store, run1, {"task_data": task_data_ref, "base": base_ref})
    cs, cs_data = refs["cold_start"], refs["cold_start_data"]
    runner.build(["sft"], one, store, run1, refs | {"rejection_sampling": cs_data})
    runs[1] = run1
    run2 = store.new_run_id("two-machines")
    refs = runner.build(["reasoning_rl"], two, store, run2,
                       {"task_data": task_data_ref, "base": base_ref, "cold_start": cs})
    runner.build(["sft"], two, store, run2, refs | {"rejection_sampling": cs_data})
    runs[2] = run2
    return store, runs


@pytest.mark.parametrize("stage", ["reasoning_rl", "sft"])
def test_two_machines_train_like_one(one_machine_and_two, stage):
    store, runs = one_machine_and_two
    one, two = store.manifest(runs[1], stage), store.manifest(runs[2], stage)
    assert one is not None and two is not None
    # 2 processes in all, gloo DDP across the two launchers' process groups
    assert two["metrics"]["num_processes"] == 2 and two["metrics"]["distributed_backend"] == "gloo"
    assert two["metrics"]["num_machines"] == 2
    assert two["metrics"]["steps"] == one["metrics"]["steps"] == 1
    # the same files as one machine writes, nothing of the launch left over
    assert set(two["outputs"]) == set(one["outputs"])
    assert not any(p.startswith(distributed.SPEC_DIR) for p in two["outputs"])
    d1, d2 = store.stage_dir(runs[1], stage), store.stage_dir(runs[2], stage)
    w1, w2 = (load_file(str(d / ADAPTER / "adapter_model.safetensors")) for d in (d1, d2))
    assert {k: v.shape for k, v in w1.items()} == {k: v.shape for k, v in w2.items()}
    # both machines trained: TRL counts the tokens of every process, twice one process's share
    tokens = [max(h.get("num_tokens", 0) for h in json.loads((d / "log_history.json").read_text())) for d in (d1, d2)]
    assert tokens[0] > 0 and 1.6 < tokens[1] / tokens[0] < 2.4, tokens
    start = load_file(str(store.stage_dir(runs[1], "cold_start" if stage == "reasoning_rl" else "reasoning_rl")
                          / ADAPTER / "adapter_model.safetensors"))
    assert any(not torch.equal(start[k], w2[k]) for k in start), "the two-machine run did not train the adapter"
    assert abs(two["metrics"]["train_loss"] - one["metrics"]["train_loss"]) <= LOSS_TOLERANCE[stage]
    assert store.verify(two) == []


def test_every_machine_builds_the_same_launch_but_its_rank(tmp_path):
    cfg = DistributedConfig(num_machines=2, main_process_ip="10.0.0.5", main_process_port=29400,
                            submit="sbatch --wait job.sh {spec}")
    spec = tmp_path / "spec.json"
    m0, m1 = (distributed.accelerate_command(4, spec, cfg=cfg, rank=r, python="/opt/gpu/bin/python") for r in (0, 1))
    assert m0[0] == "/opt/gpu/bin/python"
    differ = [(a, b) for a, b in zip(m0, m1, strict=True) if a != b]
    assert differ == [("0", "1"), ("is_host=1", "is_host=0")]  # --machine_rank, and who hosts the c10d store

    def opt(cmd, name):
        return cmd[cmd.index(name) + 1]

    assert (opt(m0, "--num_machines"), opt(m0, "--num_processes"), opt(m0, "--rdzv_backend")) == ("2", "4", "c10d")
    assert (opt(m0, "--main_process_ip"), opt(m0, "--main_process_port")) == ("10.0.0.5", "29400")
    with pytest.raises(distributed.DistributedError, match="divide"):
        distributed.accelerate_command(3, spec, cfg=cfg)


def test_machine_rank_comes_from_the_environment(monkeypatch):
    cfg = DistributedConfig(num_machines=2, main_process_ip="h", main_process_port=1, submit="x")
    monkeypatch.setenv(distributed.MACHINE_RANK_ENV, "1")
    assert distributed.machine_rank(cfg) == 1
    monkeypatch.setenv(distributed.MACHINE_RANK_ENV, "2")
    with pytest.raises(distributed.DistributedError, match="0 to 1"):
        distributed.machine_rank(cfg)
    assert distributed.machine_rank(cfg.model_copy(update={"machine_rank": 0})) == 0


def test_several_machines_need_an_address_a_fixed_port_and_a_gang_job():
    from core.config import RecipeError
    from stages.preflight import validate

    with pytest.raises(RecipeError, match="main_process_ip, main_process_port, submit"):
        recipe(num_machines=2)
    three = recipe(num_machines=3, main_process_ip="n0", main_process_port=29400, submit="x {spec}")
    with pytest.raises(RecipeError, match=r"reasoning_rl.num_processes: 2 processes do not divide .* 3"):
        validate(three)


def test_another_interpreter_runs_single_process_stages_through_the_worker(monkeypatch, tmp_path):
    monkeypatch.delenv(distributed.WORKER_ENV, raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv(distributed.PYTHON_ENV, raising=False)
    assert not distributed.should_launch(1)
    with distributed.placement(DistributedConfig(python=str(tmp_path / "gpu" / "bin" / "python"))):
        assert distributed.should_launch(1)
        monkeypatch.setenv(distributed.PYTHON_ENV, sys.executable)  # the environment variable wins
        assert not distributed.should_launch(1)
    monkeypatch.setenv(distributed.WORKER_ENV, "1")  # inside a launched worker: train here
    monkeypatch.setenv(distributed.PYTHON_ENV, "/elsewhere/python")
    assert not distributed.should_launch(1)
