"""The pocket base, built the way nanoGPT's train.py reads: corpus, tokenizer, a tiny Qwen2 from
config, a plain training loop, save. The result is an ordinary HF model directory."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

from data.chat import render
from pocket.corpus import corpus
from pocket.tokenizer import build_tokenizer

if TYPE_CHECKING:
    from core.config import PocketConfig, TemplateConfig

log = logging.getLogger(__name__)


def build_model(cfg: PocketConfig, tokenizer: PreTrainedTokenizerFast) -> Qwen2ForCausalLM:
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_kv_heads,
        max_position_embeddings=cfg.max_position_embeddings,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(cfg.seed)
    return Qwen2ForCausalLM(config)


def pretrain(model: Qwen2ForCausalLM, ids: list[list[int]], cfg: PocketConfig) -> list[float]:
    """Next-token prediction on random windows of the packed corpus (nanoGPT-style: documents are
    concatenated, each ending in <|end|>, so no compute goes to padding); returns the loss per step."""
    stream = torch.tensor([t for doc in ids for t in doc])
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, betas=(0.9, 0.95), weight_decay=0.01)

    def lr_scale(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_scale)
    if cfg.autocast not in ("float32", "bfloat16"):
        raise ValueError(f"pretrain: autocast {cfg.autocast!r} must be resolved first (pocket.compute_dtype)")
    model.train()
    losses = []
    bar = tqdm(range(cfg.steps), desc="pretraining pocket base", unit="step")
    for step in bar:
        starts = torch.randint(len(stream) - cfg.block_size - 1, (cfg.batch_size,), generator=gen)
        batch = torch.stack([stream[s : s + cfg.block_size] for s in starts.tolist()])
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.autocast == "bfloat16"):
            loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if step % 20 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()
    return losses


def probe_step(cfg: PocketConfig) -> Callable[[str], None]:
    """One pretraining step (forward, backward) of a model of `cfg`'s shapes on random tokens, in a
    given autocast dtype: what core.machine times to choose the dtype on this machine."""
    config = Qwen2Config(vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
                         num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads,
                         num_key_value_heads=cfg.num_kv_heads, max_position_embeddings=cfg.max_position_embeddings,
                         tie_word_embeddings=True)
    model = Qwen2ForCausalLM(config)
    batch = torch.randint(cfg.vocab_size, (cfg.batch_size, cfg.block_size), generator=torch.Generator().manual_seed(0))

    def step(dtype: str) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bfloat16"):
            loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        model.zero_grad(set_to_none=True)

    return step


def build(cfg: PocketConfig, template: TemplateConfig, held_chains: set[tuple[int, ...]], out: Path) -> dict[str, Any]:
    """Corpus (no chain of `held_chains` in it) -> tokenizer -> model -> pretraining -> save, into the
    directory `out`; returns the pretraining's record (loss curve, sizes, wall, dtype)."""
    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    docs = corpus(cfg, template, held_chains)
    texts = [m["content"] for conv, _ in docs for m in conv] + [reply for _, reply in docs]
    tokenizer = build_tokenizer(texts, cfg.vocab_size)
    rendered = [
        render(tokenizer, conv + [{"role": "assistant", "content": reply}], add_generation_prompt=False)
        for conv, reply in docs
    ]
    ids = tokenizer(rendered, add_special_tokens=False)["input_ids"]
    longest = max(map(len, ids))
    if longest > cfg.max_position_embeddings:
        raise ValueError(f"pocket documents reach {longest} tokens, above max_position_embeddings "
                         f"{cfg.max_position_embeddings}; raise it or shorten the tasks")
    model = build_model(cfg, tokenizer)
    log.info("pocket base: %d documents, vocab %d, %.2fM parameters", len(ids), len(tokenizer),
             model.num_parameters() / 1e6)
    losses = pretrain(model, ids, cfg)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return {
        "documents": len(ids),
        "longest_document_tokens": longest,
        "parameters": model.num_parameters(),
        "vocab_size": len(tokenizer),
        "final_loss": sum(losses[-20:]) / len(losses[-20:]),
        "loss": losses[:: max(1, len(losses) // 200)],
        "autocast": cfg.autocast,
        "wall_s": round(time.perf_counter() - t0, 1),
    }
