"""The real-model GPU path, checked on the CPU: device choice with a fake accelerator count, stop
tokens with a pocket tokenizer whose EOS is not its end-of-turn token, the reward model's
preference data from a local file with a column mapping, the real recipes' stage-4 defaults, and
hub rows without an answer skipped and counted."""

from __future__ import annotations

import json
import os
from collections import Counter
from types import SimpleNamespace

import pytest
import torch

from core import devices
from core.config import (
    AllScenarioConfig,
    GRPOStageConfig,
    HubSource,
    PocketConfig,
    PreferenceColumns,
    PreferenceSource,
    load_recipe,
    parse_recipe,
)
from core.generation import generate
from core.modeling import ModelError, end_of_turn, inference_model, load_tokenizer, stop_token_ids

REAL_RECIPES = ["configs/qwen2.5-0.5b-instruct-gsm8k.yaml", "configs/qwen2.5-1.5b-math.yaml"]

# --- one GPU per single-process stage ---------------------------------------------------------


@pytest.mark.parametrize(("env", "count", "visible"), [
    ({"CUDA_VISIBLE_DEVICES": "3,5"}, 2, "3"),  # a worker started with two GPUs: the first of them
    ({}, 4, "0"),  # Kubernetes with gpus: 4 and no variable set
    ({"CUDA_VISIBLE_DEVICES": "2"}, 1, "2"),
    ({}, 0, None),  # no GPU: nothing to narrow
])
def test_a_child_sees_one_gpu_whatever_is_visible(env, count, visible):
    assert devices.one_gpu_env(env, count).get("CUDA_VISIBLE_DEVICES") == visible


def _child_view(name: str) -> tuple[int, str | None]:
    # what TRL's colocated vLLM does to the environment, in the child
    os.environ["RANK"] = "0"
    return os.getpid(), os.environ.get(name)


def test_isolated_work_runs_in_a_child_that_sees_one_of_two_gpus_and_leaks_nothing(monkeypatch):
    monkeypatch.setattr(devices, "gpu_count", lambda: 2)  # a fake accelerator count
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    monkeypatch.delenv("RANK", raising=False)
    pid, visible = devices.run_isolated(_child_view, "CUDA_VISIBLE_DEVICES")
    assert pid != os.getpid()
    assert visible == "0"
    assert "RANK" not in os.environ and os.environ["CUDA_VISIBLE_DEVICES"] == "0,1"


def test_gpu_work_is_isolated_on_a_gpu_host_only(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr(devices, "gpu_count", lambda: 0)
    assert not devices.should_isolate()
    monkeypatch.setattr(devices, "gpu_count", lambda: 1)
    assert devices.should_isolate()
    monkeypatch.setenv("WORLD_SIZE", "2")  # inside `accelerate launch`: train in place
    assert not devices.should_isolate()


# --- models on the accelerator ----------------------------------------------------------------


@pytest.fixture(scope="module")
def base_like(tmp_path_factory):
    """A tiny Qwen2 directory whose tokenizer is built like Qwen2.5 base's: EOS <|endoftext|>, chat
    turns closed by <|im_end|>."""
    from pocket.pretrain import build_model
    from pocket.tokenizer import build_tokenizer

    tok = build_tokenizer(["the answer is 3 . the sum of 4 and 5 is 9 ."] * 20, vocab_size=300)
    tok.eos_token = "<|endoftext|>"
    cfg = PocketConfig(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=64, seed=0)
    model = build_model(cfg, tok)
    path = tmp_path_factory.mktemp("base_like")
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def test_inference_models_go_to_the_accelerator(base_like, monkeypatch):
    import core.modeling

    monkeypatch.setattr(core.modeling, "accelerator", lambda: torch.device("meta"))  # a fake accelerator
    assert inference_model(base_like).device.type == "meta"


# --- stop tokens ----------------------------------------------------------------------------------


def test_the_end_of_turn_token_comes_from_the_chat_template(base_like):
    tok = load_tokenizer(base_like)
    assert tok.eos_token == "<|im_end|>"
    assert load_tokenizer(base_like, "<|endoftext|>").eos_token == "<|endoftext|>"  # the recipe override
    with pytest.raises(ModelError, match="<nope>"):
        load_tokenizer(base_like, "<nope>")


def test_a_tokenizer_without_a_chat_template_keeps_its_eos(base_like):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(base_like)
    tok.chat_template = None
    assert end_of_turn(tok) is None


class _Scripted:
    """A model whose generate returns a fixed continuation and records its arguments."""

    device = torch.device("cpu")
    generation_config = SimpleNamespace(eos_token_id=None)

    def __init__(self, tail: list[int]):
        self.tail, self.kwargs = tail, {}

    def eval(self):
        return self

    def generate(self, input_ids, **kwargs):
        self.kwargs = kwargs
        tail = torch.tensor([self.tail] * input_ids.shape[0])
        return torch.cat([input_ids, tail], dim=1)


def test_generate_stops_at_the_end_of_turn_and_at_the_models_own_eos(base_like):
    tok = load_tokenizer(base_like)
    im_end, endoftext = tok.convert_tokens_to_ids(["<|im_end|>", "<|endoftext|>"])
    word = tok("the", add_special_tokens=False)["input_ids"][0]
    model = _Scripted([word, word, im_end, word, word])
    model.generation_config = SimpleNamespace(eos_token_id=endoftext)
    (completion,), = generate(model, tok, ["the"], max_new_tokens=5, progress=False)
    assert set(model.kwargs["eos_token_id"]) == {im_end, endoftext}
    assert completion.finished and completion.num_tokens == 3


def test_grpo_is_told_the_stop_tokens_for_hf_and_vllm_rollouts(base_like, tmp_path):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import GRPOTrainer

    from core.trainers import grpo_args

    tok = load_tokenizer(base_like)
    model = AutoModelForCausalLM.from_pretrained(base_like)
    stops = stop_token_ids(tok, model)
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    assert im_end in stops
    cfg = GRPOStageConfig(steps=2, batch_size=2, num_generations=2, warmup_steps=1, use_vllm=True)
    args = grpo_args(cfg, tmp_path, 0, [1.0], "none", stops)
    assert args.generation_kwargs == {"stop_token_ids": stops}  # vLLM loads its own tokenizer
    assert args.lr_scheduler_type == "constant_with_warmup" and args.warmup_steps == 1
    hf = grpo_args(cfg.model_copy(update={"use_vllm": False}), tmp_path, 0, [1.0], "none", stops)
    trainer = GRPOTrainer(model=model, reward_funcs=[lambda completions, **kw: [0.0] * len(completions)], args=hf,
                          train_dataset=Dataset.from_list([{"prompt": "the"}] * 4), processing_class=tok)
    assert im_end in trainer.eos_token_ids  # TRL's HF rollouts end, and are masked, at the end of turn


# --- the reward model's preference data ------------------------------------------------------------


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_preference_pairs_load_from_a_file_with_a_column_mapping(tmp_path):
    from data.preferences import dataset_pairs

    rows = [{"question": f"q{i}", "good": f"right {i}", "bad": f"wrong {i}"} for i in range(6)]
    src = PreferenceSource(kind="file", path=_jsonl(tmp_path / "p.jsonl", rows),
                           columns=PreferenceColumns(prompt="question", chosen="good", rejected="bad"))
    train, heldout = dataset_pairs(src, 4, 2, seed=0)
    assert len(train) == 4 and len(heldout) == 2
    pair = train[0]
    i = pair["prompt"][0]["content"][1:]
    assert pair["prompt"] == [{"role": "user", "content": f"q{i}"}]
    assert pair["chosen"] == [{"role": "assistant", "content": f"right {i}"}]
    assert pair["rejected"] == [{"role": "assistant", "content": f"wrong {i}"}]
    assert not {p["prompt"][0]["content"] for p in heldout} & {p["prompt"][0]["content"] for p in train}


def test_implicit_prompt_pairs_split_at_their_shared_opening(tmp_path):
    from data.preferences import dataset_pairs

    user = {"role": "user", "content": "hi"}
    rows = [{"a": [user, {"role": "assistant", "content": "hello"}], "b": [user, {"role": "assistant", "content": "go"}]}]
    src = PreferenceSource(kind="file", path=_jsonl(tmp_path / "p.jsonl", rows),
                           columns=PreferenceColumns(prompt=None, chosen="a", rejected="b"))
    (pair,), _ = dataset_pairs(src, 1, 0, seed=0)
    assert pair["prompt"] == [user] and pair["chosen"] == [{"role": "assistant", "content": "hello"}]


def test_a_missing_preference_column_names_the_mapping(tmp_path):
    from data.preferences import dataset_pairs
    from data.sources import DataError

    src = PreferenceSource(kind="file", path=_jsonl(tmp_path / "p.jsonl", [{"prompt": "q", "chosen": "a"}]))
    with pytest.raises(DataError, match=r"missing column\(s\) \['rejected'\]"):
        dataset_pairs(src, 1, 0, seed=0)


def test_the_reward_model_trains_on_the_named_file(tmp_path, test_recipe):
    from stages.reward_model import pairs

    rows = [{"prompt": f"what is {i} ?", "chosen": f"<answer> {i} </answer>", "rejected": "no"} for i in range(10)]
    cfg = test_recipe.reward_model.model_copy(update={
        "dataset": PreferenceSource(kind="file", path=_jsonl(tmp_path / "prefs.jsonl", rows)),
        "pairs": 6, "heldout_pairs": 2})
    train, heldout = pairs(cfg)
    assert len(train) == 6 and len(heldout) == 2 and all(p["kind"] is None for p in train)


# --- the real recipes ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", REAL_RECIPES)
def test_real_recipes_keep_the_reward_model_and_language_consistency_in_stage_4(path):
    recipe = load_recipe(path)
    names = {r.name for r in recipe.all_scenario_rl.rewards}
    assert {"reward_model", "language_consistency", "accuracy", "format"} <= names
    assert recipe.reward_model.dataset is not None and recipe.reward_model.bf16
    for cfg in (recipe.reasoning_rl, recipe.all_scenario_rl, recipe.r1_zero):
        assert cfg.gradient_checkpointing and cfg.vllm_max_model_length >= cfg.max_completion_length


def test_a_stage_4_section_without_rewards_keeps_the_stage_4_rewards():
    recipe = parse_recipe({"name": "x", "data": {"sources": [{"kind": "file", "path": "x.jsonl"}]},
                           "all_scenario_rl": {"steps": 5}})
    assert recipe.all_scenario_rl.rewards == AllScenarioConfig().rewards
    assert "reward_model" in {r.name for r in recipe.all_scenario_rl.rewards}


@pytest.mark.parametrize("path", REAL_RECIPES)
def test_the_dry_run_reports_devices_memory_and_the_reward_model(path):
    from shell.plan import dry_run

    out = dry_run(path)
    assert "devices:" in out and "vLLM colocate share 0.3" in out
    assert "reward model: 20000 pairs from hub trl-lib/ultrafeedback_binarized" in out


# --- hub rows ---------------------------------------------------------------------------------


def test_hub_rows_without_an_answer_are_skipped_and_counted(monkeypatch):
    import datasets

    from data.sources import hub_rows

    rows = [{"question": "1+1", "answer": "#### 2"}, {"question": "2+2", "answer": "no marker"}]
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: datasets.Dataset.from_list(rows))
    skipped: Counter[str] = Counter()
    src = HubSource(kind="hub", name="x/gsm", columns={"prompt": "question", "answer": "answer"},
                    answer_format="gsm8k")
    assert [r["answer"] for r in hub_rows(src, skipped)] == ["2"]
    assert skipped == {"gsm": 1}


def test_stage_4_general_prompts_and_general_sft_rows_come_from_the_preference_data(tmp_path, test_recipe):
    from stages.general import general_rows

    # 3 of 12 too long: of the 6 drawn for 3 prompts, at least 3 fit
    rows = [{"prompt": f"tell me about {'a long story ' * 5 if i % 4 == 0 else ''}item {i}",
             "chosen": f"item {i} is fine", "rejected": "no"} for i in range(12)]
    src = PreferenceSource(kind="file", path=_jsonl(tmp_path / "prefs.jsonl", rows))
    recipe = test_recipe.model_copy(update={"reward_model": test_recipe.reward_model.model_copy(
        update={"dataset": src})})
    prompts = [r["prompt"] for r in general_rows(recipe, 3, 0, fits=lambda p: "long" not in p)]
    assert len(prompts) == 3 and all(p.startswith("tell me about item") for p in prompts)
    general = general_rows(recipe, 2, 0)
    assert len(general) == 2 and all(r["answer"] == "" and r["task"] == "general" for r in general)
    reply = general[0]["reply"]
    assert reply.startswith("<think>") and reply.endswith("</answer>") and " is fine" in reply
