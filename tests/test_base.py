"""The pocket base: a normal HF model directory that the Auto classes load and generate from,
with a tokenizer that round-trips exactly and tags that are ordinary tokens."""

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

import pocket
from data.chat import messages, render
from data.saved import load_split
from pocket import world
from pocket.corpus import corpus
from pocket.pretrain import build_model, pretrain
from pocket.tokenizer import TAG_TOKENS, build_tokenizer
from rewards.language import word_languages
from stages import base
from stages.base import held_out_prompts


@pytest.fixture(scope="module")
def loaded(pocket_run):
    _, _, _, base_ref = pocket_run
    return AutoModelForCausalLM.from_pretrained(base_ref.path), AutoTokenizer.from_pretrained(base_ref.path)


def test_auto_classes_load_and_generate(loaded, test_recipe, pocket_run):
    model, tok = loaded
    assert model.config.model_type == "qwen2"
    row = load_split(pocket_run[2], "test")[0]
    prompt = render(tok, messages(row["prompt"], test_recipe.data.template))
    enc = tok(prompt, return_tensors="pt", add_special_tokens=False)
    out = model.generate(**enc, max_new_tokens=40, do_sample=False)
    text = tok.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    assert text.strip()  # it says something


SAMPLES = [
    "State the final answer to the following arithmetic problem: 4 - 1 - 7 + 7 =",
    "<think> i start from 4 - 1 . then 3 . so the answer is 3 . </think> <answer> 3 </answer>",
    "<think> je commence par 12 + 5 . puis 17 . donc la réponse est 17 . </think>",
    "unicode: École 中文 ９ 1,234 \\boxed{\\frac{1}{2}} <|im_end|>",
]


def test_reloaded_tokenizer_encodes_exactly_as_the_training_one(pocket_run, test_recipe, loaded):
    """A custom pre-tokenizer can be silently lost on save/load; rebuild the training tokenizer
    from the same corpus and compare encodings token for token."""
    cfg, template = test_recipe.model.pocket, test_recipe.data.template
    docs = corpus(cfg.model_copy(update={"seed": 0}), template, pocket.held_chains(held_out_prompts(pocket_run[2])))
    texts = [m["content"] for conv, _ in docs for m in conv] + [reply for _, reply in docs]
    trained = build_tokenizer(texts, cfg.vocab_size)
    _, reloaded = loaded
    for text in SAMPLES + [reply for _, reply in docs[:50]]:
        assert reloaded.encode(text, add_special_tokens=False) == trained.encode(text, add_special_tokens=False)
        assert reloaded.decode(reloaded.encode(text, add_special_tokens=False)) == text


def test_tags_are_single_ordinary_tokens_and_survive_skip_special(loaded):
    _, tok = loaded
    for tag in TAG_TOKENS:
        ids = tok.encode(tag, add_special_tokens=False)
        assert len(ids) == 1 and ids[0] not in tok.all_special_ids
    text = "<think> 1 + 2 . then 3 . </think> <answer> 3 </answer>"
    ids = tok.encode(text + tok.eos_token, add_special_tokens=False)
    assert tok.decode(ids, skip_special_tokens=True) == text


def test_chat_template_pad_and_eos(loaded):
    model, tok = loaded
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
    assert tok.pad_token_id != tok.eos_token_id
    assert len(tok) == model.config.vocab_size  # loading added no token
    text = render(tok, [{"role": "user", "content": "hi"}])
    assert text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


def test_one_digit_per_token(loaded):
    _, tok = loaded
    pieces = tok.convert_ids_to_tokens(tok.encode("12 + 345", add_special_tokens=False))
    assert sum(any(c.isdigit() for c in p) for p in pieces) == 5


def test_base_metrics_are_recorded(pocket_run, test_recipe):
    store, run_id, task_data_ref, base_ref = pocket_run
    metrics = store.manifest(run_id, "base")["metrics"]
    k, validation = metrics["samples_per_prompt"], len(load_split(task_data_ref, "validation"))
    for prompt in ("task", "practice"):  # how it answers on each prompt, before any RL
        cell = metrics[prompt]
        assert cell["count"]["all"] == validation * k and cell["mean_length"] > 0
        assert sum(cell["styles"].values()) == pytest.approx(1.0)
        assert sum(cell["count"].get(s, 0) for s in world.ANSWER_STYLES) == cell["count"]["all"]
        assert 0.0 <= cell["accuracy"]["all"] <= 1.0
    assert 0.0 <= metrics["greedy_accuracy"] <= 1.0 and metrics["accuracy_all"] == metrics["task"]["accuracy"]["all"]
    assert json.loads((store.stage_dir(run_id, "base") / "eval.json").read_text()) == metrics
    assert (Path(base_ref.path) / "pretraining.json").is_file()


def test_pocket_base_is_cached_by_content(pocket_run, test_recipe, monkeypatch):
    store, _, task_data_ref, base_ref = pocket_run
    monkeypatch.setattr(pocket, "build_base", lambda *a, **k: pytest.fail("rebuilt a cached base"))
    path, how = base.pocket_base(test_recipe.model.pocket, test_recipe.data.template, held_out_prompts(task_data_ref),
                                 store, test_recipe.seed)
    assert str(path) == base_ref.path and how["base_origin"] == "built" and how["autocast"] == "float32"


def test_corpus_is_deterministic_and_excludes_the_held_out_chains(test_recipe, pocket_run):
    cfg, template = test_recipe.model.pocket.model_copy(update={"seed": 0}), test_recipe.data.template
    held = pocket.held_chains(held_out_prompts(pocket_run[2]))
    a = corpus(cfg, template, held)
    assert a == corpus(cfg, template, held)
    assert not held & pocket.held_chains([conv[-1]["content"] for conv, _ in a])


def test_checked_practice_follows_the_webs_written_languages(test_recipe):
    """Checked practice work is French (wholly or in part) about as often as the web's written
    solutions are, so the base's checking habit carries the web's languages (and R1-Zero can mix)."""
    cfg = test_recipe.model.pocket.model_copy(update={"corpus_documents": 50, "practice_documents": 2000, "seed": 0})
    checked = [reply for conv, reply in corpus(cfg, test_recipe.data.template, set())
               if conv[-1]["content"].startswith(world.PRACTICE_PROMPTS["check"].split("{")[0])]
    french = sum("fr" in word_languages(reply.split(world.CHECK_WORD)[0]) for reply in checked)
    mix = cfg.mix
    expected = (mix.second_language + mix.mixed_language) / (mix.steps + mix.second_language + mix.mixed_language)
    assert len(checked) > 900 and abs(french / len(checked) - expected) < 0.05, (french, len(checked), expected)


def test_model_is_deterministic_for_a_config(test_recipe, loaded):
    _, tok = loaded
    cfg = test_recipe.model.pocket.model_copy(update={"seed": 0})
    a, b = build_model(cfg, tok), build_model(cfg, tok)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def test_bfloat16_autocast_computes_in_bfloat16_and_keeps_float32_weights(test_recipe, loaded):
    """model.pocket.autocast: the same steps on the same windows, the forward in bfloat16, the weights and
    the optimizer in float32; both precisions learn."""
    _, tok = loaded
    ids = [tok(render(tok, messages(f"{a} + {b} =", test_recipe.data.template)) + f"{a + b}")["input_ids"]
           for a in range(10) for b in range(10)]
    losses = {}
    for precision in ("float32", "bfloat16"):
        cfg = test_recipe.model.pocket.model_copy(update={"steps": 40, "warmup_steps": 5, "autocast": precision,
                                                          "seed": 0})
        model = build_model(cfg, tok)
        losses[precision] = pretrain(model, ids, cfg)
        assert all(p.dtype == torch.float32 for p in model.parameters())
        assert losses[precision][-1] < 0.7 * losses[precision][0], (precision, losses[precision][::10])
    assert losses["float32"][0] == pytest.approx(losses["bfloat16"][0], rel=0.02)  # same start...
    assert losses["float32"] != losses["bfloat16"]  # ...computed in another precision
