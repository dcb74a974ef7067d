"""The lean sampler (core/decoding.py) computes what HF computes for the pocket model: the same
logits at every step (left padding included), the same greedy tokens, HF's top-p nucleus; it is
used only where that holds (a plain Qwen2 on the CPU), and GRPO's rollouts go through it merged."""

from __future__ import annotations

import pytest
import torch

from core import decoding
from core.modeling import inference_model, load_tokenizer, stop_token_ids, trainable_model
from data.chat import messages, render
from data.saved import load_split


@pytest.fixture(scope="module")
def pocket(pocket_run, test_recipe):
    _, _, task_data_ref, base_ref = pocket_run
    tok = load_tokenizer(base_ref.path)
    tok.padding_side = "left"
    rows = list(load_split(task_data_ref, "test"))[:6]
    prompts = [render(tok, messages(r["prompt"], test_recipe.data.template)) for r in rows]
    prompts[1] = render(tok, [{"role": "user", "content": "1 ="}])  # a short one: real left padding
    enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    model = inference_model(base_ref.path)
    return model, tok, enc, base_ref


def test_the_pocket_model_is_supported_and_an_unmerged_adapter_is_not(pocket, test_recipe):
    model, _, _, base_ref = pocket
    assert decoding.supported(model)
    assert not decoding.supported(trainable_model(base_ref.path, None, test_recipe.model.lora, seed=0))


def test_greedy_tokens_and_logits_match_hf(pocket):
    model, tok, enc, _ = pocket
    stops = stop_token_ids(tok, model)
    ours = decoding.sample(model, enc["input_ids"], enc["attention_mask"], max_new_tokens=24, temperature=0,
                           top_p=1.0, stop_ids=stops, pad_id=tok.pad_token_id)
    hf = model.generate(**enc, max_new_tokens=24, do_sample=False, pad_token_id=tok.pad_token_id,
                        eos_token_id=stops)[:, enc["input_ids"].shape[1]:]
    n = min(ours.shape[1], hf.shape[1])
    assert torch.equal(ours[:, :n], hf[:, :n]) and (ours[:, n:] == tok.pad_token_id).all()
    # the logits of every step, teacher-forced through HF's own forward on the same tokens
    full = torch.cat([enc["input_ids"], ours], 1)
    mask = torch.cat([enc["attention_mask"], torch.ones_like(ours)], 1)
    with torch.no_grad():
        reference = model(input_ids=full, attention_mask=mask).logits[:, enc["input_ids"].shape[1] - 1:-1]
    w = decoding._Weights(model)
    shape = (full.shape[0], w.kv_heads, full.shape[1], w.head_dim)
    cache = [(torch.zeros(shape), torch.zeros(shape)) for _ in w.layers]
    p = enc["input_ids"].shape[1]
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    first = decoding._forward(w, full[:, :p], positions[:, :p],
                              (mask[:, None, None, :p].bool() & torch.ones(p, p, dtype=torch.bool).tril())
                              | torch.eye(p, dtype=torch.bool), cache, 0)
    steps = [first]
    for t in range(ours.shape[1] - 1):
        steps.append(decoding._forward(w, full[:, p + t:p + t + 1], positions[:, p + t:p + t + 1],
                                       mask[:, None, None, :p + t + 1].bool(), cache, p + t))
    got = torch.stack(steps, 1)
    assert torch.allclose(got, reference, atol=1e-4), (got - reference).abs().max()


def test_top_p_keeps_hfs_nucleus():
    from transformers.generation.logits_process import TopPLogitsWarper

    logits = torch.randn(8, 50, generator=torch.Generator().manual_seed(0)) * 3
    expected = TopPLogitsWarper(0.9)(None, logits.clone())
    ordered, order = logits.sort(-1)
    tail = ordered.softmax(-1).cumsum(-1) <= 1 - 0.9
    tail[..., -1] = False
    ours = logits.masked_fill(tail.scatter(-1, order, tail), float("-inf"))
    assert torch.equal(torch.isinf(ours), torch.isinf(expected))
    # and the sampler draws only from it
    picks = torch.stack([decoding._pick(logits, 1.0, 0.9, torch.Generator().manual_seed(i)) for i in range(200)])
    assert not torch.isinf(expected.gather(1, picks.T)).any()


def test_sampling_stops_each_row_at_its_end_and_pads_after(pocket):
    model, tok, enc, _ = pocket
    stops = stop_token_ids(tok, model)
    out = decoding.sample(model, enc["input_ids"], enc["attention_mask"], max_new_tokens=48, temperature=1.0,
                          top_p=0.95, stop_ids=stops, pad_id=tok.pad_token_id,
                          generator=torch.Generator().manual_seed(0))
    for row in out.tolist():
        ends = [i for i, t in enumerate(row) if t in stops]
        if ends:
            assert all(t == tok.pad_token_id for t in row[ends[0] + 1:])
