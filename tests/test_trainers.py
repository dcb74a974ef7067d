"""core/trainers.py's GRPO trainer: rollouts on the merged adapter (through the lean sampler, or HF
generate where it does not apply), updates on the unmerged one, and the base weights left as they
were (merging and unmerging in place must not drift them)."""

from __future__ import annotations

import datasets
import pytest
import torch

from core.config import GRPOStageConfig
from core.modeling import load_tokenizer, stop_token_ids, trainable_model
from core.trainers import MergedRolloutGRPOTrainer, grpo_args
from data.chat import messages
from data.saved import load_split


@pytest.mark.parametrize("lean", [True, False], ids=["lean sampler", "HF generate"])
def test_rollouts_run_merged_and_updates_unmerged(pocket_run, test_recipe, tmp_path, monkeypatch, lean):
    from core import decoding

    _, _, task_data_ref, base_ref = pocket_run
    tokenizer = load_tokenizer(base_ref.path)
    model = trainable_model(base_ref.path, None, test_recipe.model.lora, seed=0)
    model.generation_config.eos_token_id = stop_token_ids(tokenizer, model)
    layer = model.base_model.model.model.layers[0].self_attn.q_proj
    before = layer.base_layer.weight.detach().clone()
    seen = {"generation": set(), "training": set()}
    layer.register_forward_pre_hook(
        lambda mod, args: seen["training" if torch.is_grad_enabled() else "generation"].add(mod.merged))
    sample = decoding.sample
    lean_calls = []

    def spy(*args, **kwargs):  # the lean sampler reads the weights directly: record them merged or not
        lean_calls.append(layer.merged)
        return sample(*args, **kwargs)

    monkeypatch.setattr(decoding, "sample", spy)
    if not lean:
        monkeypatch.setattr(decoding, "supported", lambda model: False)

    rows = load_split(task_data_ref, "train").select(range(16))
    dataset = datasets.Dataset.from_list([{"prompt": messages(r["prompt"], test_recipe.data.template)} for r in rows])
    cfg = GRPOStageConfig(steps=2, batch_size=8, num_generations=4, max_completion_length=16, learning_rate=1e-2)
    args = grpo_args(cfg, tmp_path, 0, [1.0], report_to="none")
    trainer = MergedRolloutGRPOTrainer(model=model, reward_funcs=lambda completions, **_: [float(len(c[0]["content"]))
                                                                                          for c in completions],
                                       args=args, train_dataset=dataset, processing_class=tokenizer)
    trainer.train()

    if lean:
        assert lean_calls == [True, True] and seen["generation"] == set()  # both steps' rollouts, merged
    else:
        assert not lean_calls and seen["generation"] == {True}  # every rollout forward ran merged
    assert seen["training"] == {False}  # every gradient forward on base + LoRA
    assert not layer.merged
    assert torch.allclose(layer.base_layer.weight, before, atol=1e-6)  # unmerged back to the base
    assert layer.lora_B["default"].weight.abs().sum() > 0  # and the adapter did train
