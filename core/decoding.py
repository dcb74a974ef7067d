"""A lean sampler for small Qwen2-architecture models (the pocket world's): the model's own weights,
one decode step a handful of tensor ops, no generation framework around it.

Why it is written here: the pocket model's matrices are 128 wide, so a decode step is all overhead;
HF `generate` spends 4.7-4.9 ms a step on a batch of 64 on two threads (the model's forward through
its modules, the logits processors, the cache objects, the stopping criteria), this 3.0-3.2
(`python -m bench.decode_step`, 2026-12-06). It is used only where it computes
exactly what HF computes: a plain Qwen2ForCausalLM (a LoRA adapter merged into it) on the CPU,
sampling with temperature and top-p alone; anything else (another architecture, a GPU, an unmerged
adapter, other sampling settings) goes to HF generate. tests/test_decoding.py holds it to HF's
logits and greedy tokens.

    completions = sample(model, input_ids, attention_mask, max_new_tokens=160, temperature=1.0,
                         top_p=1.0, stop_ids=[eos], pad_id=pad)   # (batch, <= max_new_tokens) token ids
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F


def supported(model: Any) -> bool:
    """Whether `sample` computes what HF would for this model: a plain Qwen2 causal LM (no adapter
    layers left in it) on the CPU with standard RoPE."""
    config = getattr(model, "config", None)
    if type(model).__name__ != "Qwen2ForCausalLM" or config is None or model.device.type != "cpu":
        return False
    rope = getattr(config, "rope_parameters", None) or {}
    if rope.get("rope_type", "default") != "default" or getattr(config, "use_sliding_window", False):
        return False
    return all(type(m).__name__ == "Linear" for m in model.model.layers[0].self_attn.children()
               if hasattr(m, "weight"))


@dataclass
class _Layer:
    ln1: torch.Tensor
    qkv: torch.Tensor
    qkv_bias: torch.Tensor
    o: torch.Tensor
    ln2: torch.Tensor
    gate_up: torch.Tensor
    down: torch.Tensor


class _Weights:
    """The model's weights as one decode step reads them: q, k, v fused, gate and up fused."""

    def __init__(self, model: Any):
        cfg, m = model.config, model.model
        self.heads, self.kv_heads = cfg.num_attention_heads, cfg.num_key_value_heads
        self.head_dim = cfg.hidden_size // cfg.num_attention_heads
        self.eps = cfg.rms_norm_eps
        self.embed, self.norm, self.head = m.embed_tokens.weight, m.norm.weight, model.lm_head.weight
        self.layers = [
            _Layer(layer.input_layernorm.weight,
                   torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight]),
                   torch.cat([a.q_proj.bias, a.k_proj.bias, a.v_proj.bias]),
                   a.o_proj.weight, layer.post_attention_layernorm.weight,
                   torch.cat([layer.mlp.gate_proj.weight, layer.mlp.up_proj.weight]), layer.mlp.down_proj.weight)
            for layer in m.layers for a in [layer.self_attn]]
        theta = (getattr(cfg, "rope_parameters", None) or {}).get("rope_theta") or cfg.rope_theta
        inv_freq = 1.0 / (theta ** (torch.arange(0, self.head_dim, 2, dtype=torch.float32) / self.head_dim))
        freqs = torch.outer(torch.arange(cfg.max_position_embeddings, dtype=torch.float32), inv_freq)
        table = torch.cat([freqs, freqs], -1)
        self.cos, self.sin = table.cos(), table.sin()


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return x * cos + torch.cat([-x[..., half:], x[..., :half]], -1) * sin


def _forward(w: _Weights, ids: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor,
             cache: list[tuple[torch.Tensor, torch.Tensor]], start: int) -> torch.Tensor:
    """Logits of the last position; the new keys and values written into `cache` at `start`."""
    b, s = ids.shape
    h, kv, d = w.heads, w.kv_heads, w.head_dim
    cos, sin = w.cos[positions][:, None], w.sin[positions][:, None]
    x = F.embedding(ids, w.embed)
    for layer, (keys, values) in zip(w.layers, cache, strict=True):
        q, k, v = F.linear(F.rms_norm(x, (x.shape[-1],), layer.ln1, w.eps), layer.qkv, layer.qkv_bias).split(
            [h * d, kv * d, kv * d], -1)
        q = _rotate(q.view(b, s, h, d).transpose(1, 2), cos, sin)
        keys[:, :, start:start + s] = _rotate(k.view(b, s, kv, d).transpose(1, 2), cos, sin)
        values[:, :, start:start + s] = v.view(b, s, kv, d).transpose(1, 2)
        att = F.scaled_dot_product_attention(q, keys[:, :, :start + s], values[:, :, :start + s], attn_mask=mask,
                                             enable_gqa=kv != h)
        x = x + F.linear(att.transpose(1, 2).reshape(b, s, h * d), layer.o)
        gate, up = F.linear(F.rms_norm(x, (x.shape[-1],), layer.ln2, w.eps), layer.gate_up).chunk(2, -1)
        x = x + F.linear(F.silu(gate) * up, layer.down)
    return F.linear(F.rms_norm(x[:, -1], (x.shape[-1],), w.norm, w.eps), w.head)


def _pick(logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator | None) -> torch.Tensor:
    """The next token per row: greedy at temperature 0, else sampled from the temperature-scaled
    distribution cut to its top-p nucleus (as HF's TopPLogitsWarper: the smallest set of most likely
    tokens whose probability reaches top_p, at least one)."""
    if temperature <= 0:
        return logits.argmax(-1)
    logits = logits / temperature
    if top_p < 1.0:
        ordered, order = logits.sort(-1)
        tail = ordered.softmax(-1).cumsum(-1) <= 1 - top_p
        tail[..., -1] = False
        logits = logits.masked_fill(tail.scatter(-1, order, tail), float("-inf"))
    return torch.multinomial(logits.softmax(-1), 1, generator=generator).squeeze(-1)


@torch.no_grad()
def sample(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, *, max_new_tokens: int,
           temperature: float, top_p: float, stop_ids: Sequence[int], pad_id: int,
           generator: torch.Generator | None = None) -> torch.Tensor:
    """Generated token ids (batch, n <= max_new_tokens) after left-padded prompts: each row ends at its
    first stop token (kept) and is padded with `pad_id` after it; generation stops when every row has."""
    w = _Weights(model)
    b, p = input_ids.shape
    total = p + max_new_tokens
    dtype = w.embed.dtype
    cache = [(torch.zeros(b, w.kv_heads, total, w.head_dim, dtype=dtype),
              torch.zeros(b, w.kv_heads, total, w.head_dim, dtype=dtype)) for _ in w.layers]
    valid = torch.zeros(b, total, dtype=torch.bool)
    valid[:, :p] = attention_mask.bool()
    positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    # the prompt: causal over its valid tokens; every query also sees itself, so a padding row is not
    # empty (its output is never read, but an all-masked row would make NaNs that reach the cache)
    causal = torch.ones(p, p, dtype=torch.bool).tril()
    mask = (valid[:, None, None, :p] & causal) | torch.eye(p, dtype=torch.bool)
    logits = _forward(w, input_ids, positions, mask, cache, 0)
    stops = torch.tensor(list(stop_ids), dtype=torch.long)
    done = torch.zeros(b, dtype=torch.bool)
    out = []
    position = positions[:, -1:]
    for step in range(max_new_tokens):
        token = _pick(logits, temperature, top_p, generator).masked_fill(done, pad_id)
        out.append(token)
        done |= torch.isin(token, stops)
        if bool(done.all()) or step == max_new_tokens - 1:
            break
        valid[:, p + step] = True
        position = position + 1
        logits = _forward(w, token[:, None], position, valid[:, None, None, :p + step + 1], cache, p + step)
    return torch.stack(out, 1)
