"""The machine picks the pretraining dtype: bfloat16 only where the CPU has it natively and a probe of
the model's shapes runs clearly faster in it; an explicit value wins; the verdict is kept per machine
and shape; a process uses the cores it may run on."""

from __future__ import annotations

import os
import time

import pytest

from core import machine


def sleeper(seconds: dict[str, float]):
    calls = []

    def probe(dtype: str) -> None:
        calls.append(dtype)
        time.sleep(seconds[dtype])

    return probe, calls


SHAPE = {"hidden_size": 128, "batch_size": 11}


def test_an_explicit_dtype_wins_without_a_probe():
    probe, calls = sleeper({"float32": 0.01, "bfloat16": 0.001})
    assert machine.autocast_dtype("float32", probe, SHAPE).dtype == "float32"
    assert machine.autocast_dtype("bfloat16", probe, SHAPE).dtype == "bfloat16"
    assert not calls


def test_without_native_bfloat16_auto_is_float32_and_never_probes(monkeypatch):
    monkeypatch.setattr(machine, "cpu_flags", lambda: frozenset({"avx2", "fma"}))  # an AVX2-only CPU
    probe, calls = sleeper({"float32": 0.01, "bfloat16": 0.001})
    choice = machine.autocast_dtype("auto", probe, SHAPE)
    assert choice.dtype == "float32" and "no native bfloat16" in choice.reason and not calls


@pytest.mark.parametrize(("bf16_s", "expected"), [(0.005, "bfloat16"), (0.02, "float32"), (0.0095, "float32")])
def test_with_native_bfloat16_the_probe_decides_and_is_remembered(monkeypatch, tmp_path, bf16_s, expected):
    monkeypatch.setattr(machine, "cpu_flags", lambda: frozenset({"avx512_bf16", "amx_bf16"}))
    probe, calls = sleeper({"float32": 0.01, "bfloat16": bf16_s})
    choice = machine.autocast_dtype("auto", probe, SHAPE, tmp_path)
    assert choice.dtype == expected and "probe" in choice.reason and calls
    # the same machine and shape: the remembered verdict, no second probe (so the base's key is stable)
    probe_again, calls_again = sleeper({"float32": 0.001, "bfloat16": 0.05})
    assert machine.autocast_dtype("auto", probe_again, SHAPE, tmp_path) == choice and not calls_again
    other_shape = machine.autocast_dtype("auto", probe_again, {**SHAPE, "hidden_size": 64}, tmp_path)
    assert other_shape.dtype == "float32" and calls_again


def test_a_process_uses_the_cores_it_may_run_on():
    import torch

    assert machine.cores() == len(os.sched_getaffinity(0))
    before = torch.get_num_threads()
    try:
        assert machine.use_own_cores() == torch.get_num_threads() == machine.cores()
    finally:
        torch.set_num_threads(before)
    described = machine.machine()
    assert described["cores"] == machine.cores() and described["capability"]


def test_the_pocket_base_key_follows_the_resolved_dtype(test_recipe):
    import pocket

    cfg, template = test_recipe.model.pocket, test_recipe.data.template
    f32 = pocket.base_key(cfg.model_copy(update={"autocast": "float32"}), template, ["1 + 2 ="])
    bf16 = pocket.base_key(cfg.model_copy(update={"autocast": "bfloat16"}), template, ["1 + 2 ="])
    assert f32 != bf16
