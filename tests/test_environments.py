"""The two environments, checked with pip's resolver (shell/environments.py): the controller's (`make
install`) and the GPU workers' (`make install-gpu`) resolve with the versions we depend on, and the
canary, today's pins + Prefect + any vLLM TRL could use, still cannot (when it can, one environment is
possible again and this file says so). Skipped when the package index cannot be reached. The three run
side by side, ~50 s on 2 cores; an answer younger than R1_RESOLVER_CACHE_HOURS (24) is reused."""

from __future__ import annotations

import pytest
from packaging.version import Version

from shell import environments


@pytest.fixture(scope="module")
def resolved():
    why = environments.index_unreachable()
    if why:
        pytest.skip(f"the package index cannot be reached, so pip's resolver cannot be asked ({why})")
    return environments.resolve_all(["controller", "gpu", "canary"])


def test_the_controller_environment_resolves_with_our_pins(resolved):
    res = resolved["controller"]
    assert res.ok, res.conflict
    v = res.versions
    assert (v["prefect"], v["torch"], v["transformers"], v["trl"]) == ("3.9.1", "2.13.0", "5.24.0", "1.16.0")
    assert "vllm" not in v
    assert Version(v["fastapi"]) >= Version("0.139")  # what prefect 3.9.1 needs, and vLLM refuses


def test_the_gpu_environment_resolves_with_vllm_and_without_prefect(resolved):
    res = resolved["gpu"]
    assert res.ok, res.conflict
    v = res.versions
    assert (v["vllm"], v["torch"], v["transformers"], v["trl"]) == ("0.30.0", "2.13.0", "5.24.0", "1.16.0")
    assert Version(v["fastapi"]) < Version("0.137")  # vLLM 0.30.0's cap
    assert "prefect" not in v
    # the worker side's own libraries, at the pins the controller has too
    controller = resolved["controller"].versions
    for pkg in ("peft", "accelerate", "datasets", "tokenizers", "wandb", "reasoning-gym", "math-verify"):
        assert v[pkg] == controller[pkg], pkg


def test_canary_prefect_and_vllm_still_cannot_share_an_environment(resolved):
    res = resolved["canary"]
    assert not res.ok, (
        "pip now resolves today's pins + Prefect + vLLM together (vllm "
        f"{res.versions.get('vllm')}, fastapi {res.versions.get('fastapi')}): one environment is possible again. "
        "Pin that vLLM in the controller's environment and retire the split (docs/scale-out.md, 'Two environments').")
    assert "fastapi" in res.conflict and "prefect 3.9.1" in res.conflict, res.conflict
