"""The stages of the R1 pipeline on the session's test-size chain (cold start -> reasoning RL ->
rejection sampling -> SFT -> all-scenario RL) and the merge, each checked for a loadable adapter, a
manifest with hashed inputs and outputs, and real training signal. R1-Zero and distillation are
checked through their flows (tests/test_side_flows.py)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from core.layout import ADAPTER, BEST_ADAPTER
from core.runstore import file_sha256
from core.stage import StageCall
from data.chat import messages, render
from data.saved import load_sft_dataset, load_split
from rewards.accuracy import score_completion
from stages import graph, grpo, rejection_sampling, runner

TRAINING = ["cold_start", "reasoning_rl", "sft", "all_scenario_rl"]


@pytest.fixture(scope="module")
def chain(trained_run):
    """The session's R1-pipeline chain (tests/conftest.py), built once for every module that reads it."""
    return trained_run


def _adapter_weights(ref) -> dict[str, torch.Tensor]:
    return load_file(str(Path(ref.path) / ADAPTER / "adapter_model.safetensors"))


@pytest.mark.parametrize("stage", TRAINING)
def test_adapter_loads_with_peft_and_generates(chain, test_recipe, stage):
    store, run_id, refs = chain
    base_path = refs["base"].path
    tok = AutoTokenizer.from_pretrained(base_path)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_path), str(Path(refs[stage].path) / ADAPTER))
    prompt = render(tok, messages("State the final answer to the following arithmetic problem: 1 + 2 =",
                                  test_recipe.data.template))
    enc = tok(prompt, return_tensors="pt", add_special_tokens=False)
    out = model.generate(**enc, max_new_tokens=20, do_sample=False)
    assert out.shape[1] > enc["input_ids"].shape[1]


@pytest.mark.parametrize("stage", TRAINING + ["rejection_sampling"])
def test_manifest_records_hashed_inputs_and_outputs(chain, test_recipe, stage):
    store, run_id, refs = chain
    manifest = store.manifest(run_id, stage)
    assert manifest["status"] == "complete"
    assert manifest["inputs"]["base"]["sha256"] == refs["base"].sha256
    for rel, digest in manifest["outputs"].items():
        assert file_sha256(Path(refs[stage].path) / rel) == digest
    assert not [p for p in manifest["outputs"] if p.startswith("checkpoints/")]  # resume state is dropped
    # the key the store used is the one StageCall.key builds from the stage's declaration
    spec = graph.BY_NAME[stage]
    inputs = {name: refs[src] for name, src in spec.inputs.items()}
    assert manifest["cache_key"] == StageCall(spec, test_recipe, store, run_id, inputs).key()


def test_the_same_adapter_moves_through_the_stages(chain):
    store, run_id, refs = chain
    chain_of = {"reasoning_rl": "cold_start", "sft": "reasoning_rl", "all_scenario_rl": "sft"}
    for stage, previous in chain_of.items():
        assert store.manifest(run_id, stage)["inputs"]["adapter"]["sha256"] == refs[previous].sha256
        before, after = _adapter_weights(refs[previous]), _adapter_weights(refs[stage])
        assert before.keys() == after.keys()
        changed = any(not torch.equal(before[k], after[k]) for k in before)
        metrics = store.manifest(run_id, stage)["metrics"]
        if metrics.get("guard_restored_best") and metrics["guard_best_step"] == 0:
            # the guard found no step better on validation than the adapter it was given, and kept it
            assert not changed, f"{stage}: the guard kept step 0, yet the adapter differs from its input"
        else:
            assert changed, f"{stage} did not change the adapter"
    # the cold start really trained: LoRA B matrices start at zero
    assert any(v.abs().sum() > 0 for k, v in _adapter_weights(refs["cold_start"]).items() if "lora_B" in k)


@pytest.mark.parametrize("stage", ["reasoning_rl", "all_scenario_rl"])
def test_rewards_were_computed_on_real_samples(chain, stage):
    store, run_id, refs = chain
    history = json.loads((Path(refs[stage].path) / "log_history.json").read_text())
    steps = [h for h in history if "reward" in h]
    assert len(steps) == store.manifest(run_id, stage)["metrics"]["steps"]
    for name in ("format", "language_consistency"):
        assert any(h[f"rewards/{name}/std"] > 0 for h in steps), f"{name} never varied"
    assert all(h["completions/mean_length"] > 0 for h in steps)
    assert all("rewards/reflection_words/mean" in h for h in steps)


def test_rejection_sampled_dataset_is_verified_reasoning_plus_general_in_ratio(chain, test_recipe):
    store, run_id, refs = chain
    data = load_sft_dataset(refs["rejection_sampling"])
    reasoning = [r for r in data if r["kind"] == "reasoning"]
    general = [r for r in data if r["kind"] == "general"]
    assert reasoning, "nothing survived rejection sampling"
    for row in reasoning:
        assert score_completion(row["completion"][0]["content"], row["answer"], row["task"], row["metadata"]) == 1.0
    assert len(general) == round(len(reasoning) / test_recipe.rejection_sampling.reasoning_to_general)
    metrics = store.manifest(run_id, "rejection_sampling")["metrics"]
    removed = sum(v for k, v in metrics.items() if k.startswith("removed_"))
    assert metrics["reasoning_rows"] + removed == metrics["sampled"]


def test_all_scenario_guard_and_reward_routing(chain):
    store, run_id, refs = chain
    metrics = store.manifest(run_id, "all_scenario_rl")["metrics"]
    assert metrics["general_prompts"] > 0
    assert [h["step"] for h in metrics["guard_history"]][0] == 0
    history = json.loads((Path(refs["all_scenario_rl"].path) / "log_history.json").read_text())
    assert any("rewards/reward_model/mean" in h for h in history)


def test_sft_from_base_starts_a_fresh_adapter(chain, test_recipe):
    """With `sft.from_base` the SFT stage ignores the adapter it is offered: offered the RL adapter or
    the cold-start one, it trains the same fresh LoRA to the same weights."""
    store, run_id, refs = chain
    recipe = test_recipe.model_copy(update={"sft": test_recipe.sft.model_copy(update={"from_base": True})})
    trained = {}
    for offered in ("reasoning_rl", "cold_start"):
        inputs = {"base": refs["base"], "dataset": refs["rejection_sampling"], "adapter": refs[offered]}
        own = f"{run_id}-frombase-{offered}"
        ref = graph.BY_NAME["sft"].run(StageCall(graph.BY_NAME["sft"], recipe, store, own, inputs)).ref
        assert "adapter" not in store.manifest(own, "sft")["inputs"]
        trained[offered] = _adapter_weights(ref)
    fresh, other = trained["reasoning_rl"], trained["cold_start"]
    assert fresh.keys() == _adapter_weights(refs["sft"]).keys()
    assert all(torch.allclose(fresh[k], other[k], atol=1e-6) for k in fresh), "the offered adapter leaked in"
    assert any(v.abs().sum() > 0 for k, v in fresh.items() if "lora_B" in k), "the fresh adapter did not train"


def test_merged_model_is_a_plain_hf_directory(chain, test_recipe):
    store, run_id, refs = chain
    ref = runner.build(["merged"], test_recipe, store, run_id, refs)["merged"]
    model = AutoModelForCausalLM.from_pretrained(str(Path(ref.path) / "model"))
    peft = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(refs["base"].path),
                                     str(Path(refs["all_scenario_rl"].path) / ADAPTER)).merge_and_unload()
    ids = torch.tensor([[1, 5, 9, 13]])
    assert torch.allclose(model(ids).logits, peft(ids).logits, atol=1e-5)


def test_guard_writes_files_only_on_rank_zero(chain, test_recipe, tmp_path):
    """Under several processes every rank runs the guard; only rank 0 may write its files."""
    from transformers import TrainerControl, TrainerState

    store, run_id, refs = chain
    heldout = list(load_split(refs["task_data"], "validation"))[:4]
    model = AutoModelForCausalLM.from_pretrained(refs["base"].path)
    for rank_zero, work in ((False, tmp_path / "rank1"), (True, tmp_path / "rank0")):
        cfg = test_recipe.all_scenario_rl
        guard = grpo.RewardHackingGuard(refs["base"].path, heldout, test_recipe.data.template, cfg.guard,
                                        cfg.max_completion_length, work)
        guard.on_train_begin(None, TrainerState(is_world_process_zero=rank_zero), TrainerControl(), model=model)
        assert len(guard.history) == 1
        assert (work / BEST_ADAPTER).is_dir() == rank_zero
        assert (work / "validation_curve.json").is_file() == rank_zero


def test_rejection_sampling_without_vllm_warns_and_samples_with_hf(chain, test_recipe, caplog):
    from core.generation import vllm_unavailable

    reason = vllm_unavailable()
    if reason is None:
        pytest.skip("vLLM and a GPU are present: the fallback does not apply")
    store, run_id, refs = chain
    cfg = test_recipe.rejection_sampling.model_copy(update={"use_vllm": True, "samples_per_prompt": 2})
    recipe = test_recipe.model_copy(update={"rejection_sampling": cfg})
    prompts = [r["prompt"] for r in load_split(refs["task_data"], "train").select(range(3))]
    with caplog.at_level(logging.WARNING, logger="core.generation"):
        sampler, _, samples = rejection_sampling.sample(recipe, refs["base"], refs["reasoning_rl"], prompts)
    assert sampler == "hf on cpu"
    assert [len(s) for s in samples] == [2, 2, 2]
    assert all(c.num_tokens > 0 for s in samples for c in s)
    assert reason in caplog.text
