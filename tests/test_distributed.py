"""Scale-out for real: the reasoning-RL and SFT stages with 2 processes (`accelerate launch`, gloo
DDP on CPU) on the test recipe, against the same stages with 1 process."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from core import distributed
from core.config import load_recipe
from core.layout import ADAPTER, MANIFEST

# |loss with 2 processes - loss with 1|: the same steps on twice the rows (each rank its own batch)
LOSS_TOLERANCE = {"reasoning_rl": 0.1, "sft": 0.5}
TEST_RECIPE = Path(__file__).resolve().parent.parent / "configs" / "pocket-test.yaml"


def adapter_weights(stage_dir) -> dict[str, torch.Tensor]:
    return load_file(str(stage_dir / ADAPTER / "adapter_model.safetensors"))


def history(stage_dir) -> list[dict]:
    return json.loads((stage_dir / "log_history.json").read_text())


def adapter_tensors(stage_dir) -> dict[str, tuple[int, ...]]:
    with safe_open(str(stage_dir / ADAPTER / "adapter_model.safetensors"), "pt") as fh:
        return {k: tuple(fh.get_slice(k).get_shape()) for k in fh.keys()}  # noqa: SIM118 (safe_open has no iter)


@pytest.fixture(scope="module")
def one_and_two(pocket_run):
    """Cold start, then reasoning RL and SFT with 1 process, and again with 2 processes (in a second
    run id, from the same inputs). SFT trains on the cold-start conversations (any stage that saved
    {prompt, completion} rows will do): rejection sampling is not what is tested here."""
    from stages import runner

    store, _, task_data_ref, base_ref = pocket_run
    one = load_recipe(TEST_RECIPE)
    two = load_recipe(TEST_RECIPE, ["reasoning_rl.num_processes=2", "sft.num_processes=2"])
    runs = {}
    run1 = store.new_run_id("one-process")
    refs = runner.build(["reasoning_rl"], one, store, run1, {"task_data": task_data_ref, "base": base_ref})
    cs, cs_data = refs["cold_start"], refs["cold_start_data"]
    # SFT reads the cold-start conversations as its dataset
    runner.build(["sft"], one, store, run1, refs | {"rejection_sampling": cs_data})
    runs[1] = run1
    run2 = store.new_run_id("two-processes")
    refs = runner.build(["reasoning_rl"], two, store, run2, {"task_data": task_data_ref, "base": base_ref, "cold_start": cs})
    runner.build(["sft"], two, store, run2, refs | {"rejection_sampling": cs_data})
    runs[2] = run2
    return store, runs


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["reasoning_rl", "sft"])
def test_two_processes_match_one(one_and_two, stage):
    store, runs = one_and_two
    one, two = store.manifest(runs[1], stage), store.manifest(runs[2], stage)
    assert one is not None and two is not None, "both stages finished (complete manifests)"
    # The launch really was 2-way DDP on gloo, and the manifest says so.
    assert two["metrics"]["num_processes"] == 2
    assert two["metrics"]["distributed_backend"] == "gloo"
    assert two["config"][stage]["num_processes"] == 2 and one["config"][stage]["num_processes"] == 1
    # Same training length and the same kind of metrics as one process.
    assert two["metrics"]["steps"] == one["metrics"]["steps"]
    assert set(one["metrics"]) <= set(two["metrics"])
    # The same files (no leftovers of the launch), and an adapter of the same shape.
    assert set(two["outputs"]) == set(one["outputs"])
    assert not any(p.startswith(distributed.SPEC_DIR) for p in two["outputs"])
    d1, d2 = store.stage_dir(runs[1], stage), store.stage_dir(runs[2], stage)
    assert adapter_tensors(d2) == adapter_tensors(d1)
    assert json.loads((d2 / ADAPTER / "adapter_config.json").read_text())["r"] == 8
    # Rank 1 trained too: TRL counts the tokens every process saw, so two processes count about twice
    # as many as one over the same steps (a launch whose second rank did nothing counts one share).
    tokens = [max(h.get("num_tokens", 0) for h in history(d)) for d in (d1, d2)]
    assert tokens[0] > 0 and 1.6 < tokens[1] / tokens[0] < 2.4, tokens
    # The adapter moved from where it started, and training went the same way as with one process.
    start = adapter_weights(store.stage_dir(runs[1], "cold_start" if stage == "reasoning_rl" else "reasoning_rl"))
    moved = adapter_weights(d2)
    assert any(not torch.equal(start[k], moved[k]) for k in start), "the two-process run did not train the adapter"
    loss1, loss2 = one["metrics"]["train_loss"], two["metrics"]["train_loss"]
    assert abs(loss2 - loss1) <= LOSS_TOLERANCE[stage], (loss1, loss2)
    if stage == "reasoning_rl":
        reward1, reward2 = (sum(h["reward"] for h in history(d) if "reward" in h) / one["metrics"]["steps"]
                            for d in (d1, d2))
        assert abs(reward2 - reward1) <= 0.3, (reward1, reward2)
    # The manifest's hashes hold for what is on disk.
    assert store.verify(two) == []
    assert json.loads((d2 / MANIFEST).read_text())["status"] == "complete"


def test_inside_a_launch_nothing_is_relaunched(monkeypatch):
    monkeypatch.delenv(distributed.WORKER_ENV, raising=False)
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert distributed.should_launch(2) and not distributed.should_launch(1)
    monkeypatch.setenv(distributed.WORKER_ENV, "1")
    assert not distributed.should_launch(2)
    monkeypatch.delenv(distributed.WORKER_ENV)
    monkeypatch.setenv("WORLD_SIZE", "4")  # the user launched the whole pipeline under accelerate
    assert not distributed.should_launch(2)


def test_launch_command(tmp_path, monkeypatch):
    monkeypatch.delenv(distributed.CONFIG_ENV, raising=False)
    cmd = distributed.accelerate_command(2, tmp_path / "spec.json")
    assert cmd[1:3] == ["-m", "accelerate.commands.launch"]
    assert "--multi_gpu" in cmd and cmd[cmd.index("--num_processes") + 1] == "2"
    assert cmd[-3:] == ["-m", "core.distributed_worker", str(tmp_path / "spec.json")]
    with pytest.raises(distributed.DistributedError, match="not found"):
        distributed.accelerate_command(2, tmp_path / "spec.json", config_file=str(tmp_path / "nope.yaml"))


def test_vllm_falls_back_with_a_reason(caplog):
    from core.generation import vllm_unavailable
    from core.trainers import vllm_or_fallback

    cfg = load_recipe(TEST_RECIPE, ["reasoning_rl.use_vllm=true"]).reasoning_rl
    reason = vllm_unavailable()
    if reason is None:
        pytest.skip("vLLM and a GPU are present: nothing falls back")
    with caplog.at_level("WARNING"):
        out = vllm_or_fallback(cfg)
    assert out.use_vllm is False and reason in caplog.text
    assert vllm_or_fallback(out) is out


@pytest.mark.parametrize("name", ["ddp-cpu", "ddp-gpu", "zero2", "zero3", "fsdp"])
def test_accelerate_configs_load(name):
    from accelerate.commands.config.config_args import load_config_from_file

    path = TEST_RECIPE.parent / "accelerate" / f"{name}.yaml"
    config = load_config_from_file(str(path))
    assert config.num_processes >= 2 and path.read_text().startswith("#")
    assert str(config.distributed_type).split(".")[-1] == {
        "ddp-cpu": "MULTI_GPU", "ddp-gpu": "MULTI_GPU", "zero2": "DEEPSPEED", "zero3": "DEEPSPEED", "fsdp": "FSDP",
    }[name]


def test_an_interrupted_launch_stops_the_launcher_and_its_trainers(monkeypatch):
    """Ctrl-C or SIGTERM to the pipeline's pid alone: the launcher and its children must not outlive it."""
    import psutil

    launcher = ("import subprocess, sys, time\n"
                "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(900)'])\n"
                "print('trainers started', flush=True)\n"
                "time.sleep(900)\n")
    seen: list[psutil.Process] = []

    class Interrupted(KeyboardInterrupt):
        pass

    before = {p.pid for p in psutil.Process().children(recursive=True)}  # e.g. W&B's service: not ours

    def write(line: str) -> int:  # the first line streamed through: the trainer exists; now interrupt
        seen.extend(p for p in psutil.Process().children(recursive=True) if p.pid not in before)
        raise Interrupted

    def hung(signum, frame):
        raise TimeoutError("the interrupted launch waited for its trainers instead of stopping them")

    monkeypatch.setattr(distributed, "sys", SimpleNamespace(stderr=SimpleNamespace(write=write)))
    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(60)  # turns a hang (the bug) into a failure; the trainers sleep far longer
    try:
        with pytest.raises(Interrupted):
            distributed._run([sys.executable, "-c", launcher], dict(os.environ))
        assert len(seen) == 2  # the launcher and its trainer
        _, alive = psutil.wait_procs(seen, timeout=5)
        assert not alive
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        for p in seen:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
