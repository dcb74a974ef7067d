"""bench/gpu_smoke.py cannot run without a GPU; what can be checked here: it imports, --help works, it
says why it cannot run, and the recipes it would run load (server mode included)."""

from __future__ import annotations

import pytest
import torch

from bench import gpu_smoke
from core.config import load_recipe


def test_help_and_no_gpu(capsys):
    with pytest.raises(SystemExit) as exc:
        gpu_smoke.main(["--help"])
    assert exc.value.code == 0 and "--worker-python" in capsys.readouterr().out
    if torch.cuda.is_available():
        pytest.skip("a GPU is here: the smoke test would run")
    assert gpu_smoke.main([]) == 2
    assert "no CUDA GPU" in capsys.readouterr().err


@pytest.mark.parametrize("gpus", [1, 2])
def test_the_recipes_it_runs_load(gpus):
    plain = load_recipe(gpu_smoke.RECIPE, gpu_smoke.overrides(gpus))
    assert plain.reasoning_rl.use_vllm and plain.rejection_sampling.use_vllm and plain.sft.bf16
    assert plain.reasoning_rl.num_processes == gpus
    served = load_recipe(gpu_smoke.RECIPE, gpu_smoke.overrides(gpus, "http://127.0.0.1:8123", 51300))
    rl = served.reasoning_rl
    assert (rl.vllm_mode, rl.vllm_server.url, rl.vllm_server.group_port) == ("server", "http://127.0.0.1:8123", 51300)
    assert served.all_scenario_rl.vllm_mode == "colocate"


def test_the_workers_interpreter_is_found(monkeypatch, tmp_path):
    monkeypatch.setenv("R1_WORKER_PYTHON", "/opt/gpu/bin/python")
    assert gpu_smoke.find_worker_python(None) == "/opt/gpu/bin/python"
    assert gpu_smoke.find_worker_python("/given/python") == "/given/python"
