"""Stage 0b: the base model, and the smaller student that distillation trains.

With `model.base: pocket` (the embedded default) this builds the pocket world's base the way
nanoGPT's train.py reads: a generated corpus, a BPE tokenizer with a chat template, a tiny
Qwen2-architecture causal LM from config, a plain training loop, save. The result is an ordinary
HF model directory, cached under a content hash in runs/cache/ so it is built once. With any
other `model.base` (a local directory or hub id) the stage only records and hashes the model.
The distillation student (`student_base`) is built the same way from `distill.student`, or is the
model at `distill.student_model`.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import math
import random
import time
from pathlib import Path
from typing import Any

import torch
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from tqdm.auto import tqdm
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
)
from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX as QWEN2_PRETOKENIZE_REGEX

from core.config import PocketConfig, TemplateConfig
from core.generation import generate
from core.resources import pocket_bytes
from core.runstore import PROJECT_ROOT, RunStore, StageOutcome, StageResult, combine, file_sha256
from core.stage import StageCall
from data import pocket
from data.chat import messages, render
from data.saved import load_split
from rewards.completions import prompt_key
from rewards.verdict import judge_completion

log = logging.getLogger(__name__)

# ChatML, as Qwen2 models use it: the pocket base looks to every library like a real Qwen2.
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
EOS, PAD = "<|im_end|>", "<|endoftext|>"
# Ordinary (non-special) tokens: TRL decodes completions with special tokens skipped.
TAG_TOKENS = ["<think>", "</think>", "<answer>", "</answer>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['role'] == 'assistant' %}"
    "{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{% else %}{{ message['content'] + '<|im_end|>' }}{% endif %}"
    "{{ '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# The modules whose code decides what the pocket base is (with this module's build functions,
# see pocket_key); evaluation code is left out so changing it does not retrain the base.
BUILDER_FILES = ("data/pocket.py", "data/chat.py")


# --- corpus ----------------------------------------------------------------------------------


def corpus(cfg: PocketConfig, template: TemplateConfig, exclude: set[str]) -> list[tuple[list[dict], str]]:
    """(conversation, assistant reply) pretraining documents: solutions to task prompts in the
    configured mix of styles, then practice documents (data/pocket.py); the chains of held-out
    prompts never appear."""
    rng = random.Random(cfg.seed)
    styles, weights = zip(*cfg.mix.model_dump().items(), strict=True)
    docs = []
    for problem in pocket.problems(cfg.seed + 7919, cfg.corpus_documents, cfg.min_terms, cfg.max_terms):
        if prompt_key(problem.prompt) in exclude:
            continue
        style = rng.choices(styles, weights)[0]
        reply = pocket.solution(style, list(problem.terms), rng, cfg.direct_error_rate, cfg.max_terms,
                                cfg.second_language, cfg.slip_rate, cfg.copy_slip_rate, cfg.check_rate)
        docs.append((messages(problem.prompt, template), reply))
    heldout_chains = {pocket.chain_of(key) for key in exclude}
    # Checked practice work comes in the web's languages, as its written solutions do: checks
    # practised only after English work left R1-Zero on English alone on some seeds (seed 0 of
    # the e73277c round), with no language mixing for R1's language reward to remove.
    written = [(s, w) for s, w in zip(styles, weights, strict=True) if s in pocket.WRITTEN_STYLES and w > 0]
    written_styles, written_weights = zip(*written, strict=True) if written else (("steps",), (1.0,))
    kinds = list(pocket.PRACTICE_PROMPTS)
    practice = pocket.problems(cfg.seed + 104729, cfg.practice_documents, cfg.min_terms,
                               cfg.practice_max_terms) if cfg.practice_documents else []
    for i, problem in enumerate(practice):
        if problem.terms in heldout_chains:
            continue
        kind = kinds[i % len(kinds)]
        style = rng.choices(written_styles, written_weights)[0] if kind == "check" else "steps"
        prompt, reply = pocket.practice(kind, list(problem.terms), rng, cfg.slip_rate, cfg.copy_slip_rate,
                                        style, cfg.second_language)
        docs.append((messages(prompt, template), reply))
    rng.shuffle(docs)
    return docs


# --- tokenizer and model ---------------------------------------------------------------------


def build_tokenizer(texts: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """Byte-level BPE trained on the corpus, with exactly the normalizer and pre-tokenizer of
    Qwen2Tokenizer: AutoTokenizer always rebuilds a qwen2 model's tokenizer as Qwen2Tokenizer
    from vocab and merges, so any other pre-tokenizer would be silently replaced on load.
    Qwen2's pre-tokenizer also gives one token per digit, which arithmetic needs."""
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(texts, trainer)
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in TAG_TOKENS])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, pad_token=PAD, unk_token=PAD)
    fast.chat_template = CHAT_TEMPLATE
    return fast


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


# --- pretraining -----------------------------------------------------------------------------


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


def build_pocket(cfg: PocketConfig, template: TemplateConfig, heldout_prompts: list[str], out: Path) -> None:
    """Corpus -> tokenizer -> model -> pretraining -> save, into the directory `out`."""
    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    docs = corpus(cfg, template, {prompt_key(p) for p in heldout_prompts})
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
    (out / "pretraining.json").write_text(json.dumps({
        "documents": len(ids),
        "longest_document_tokens": longest,
        "parameters": model.num_parameters(),
        "vocab_size": len(tokenizer),
        "final_loss": sum(losses[-20:]) / len(losses[-20:]),
        "loss": losses[:: max(1, len(losses) // 200)],
        "wall_s": round(time.perf_counter() - t0, 1),
    }, indent=2))


# Hashed once at import: the code of the functions above decides what a pocket base is.
BUILDER_SOURCES = {fn.__name__: hashlib.sha256(inspect.getsource(fn).encode()).hexdigest()
                   for fn in (corpus, build_tokenizer, build_model, pretrain, build_pocket)}


def pocket_key(cfg: PocketConfig, template: TemplateConfig, heldout_prompts: list[str]) -> str:
    """Content hash of everything that decides the pocket base: config, held-out set, builder code."""
    code = {f: file_sha256(PROJECT_ROOT / f) for f in BUILDER_FILES} | BUILDER_SOURCES
    return combine({
        "config": json.dumps(cfg.model_dump(mode="json"), sort_keys=True),
        "template": json.dumps(template.model_dump(mode="json"), sort_keys=True),
        "heldout": json.dumps(sorted(heldout_prompts)),
        "code": json.dumps(code, sort_keys=True),
    })[:20]


def pocket_base(cfg: PocketConfig, template: TemplateConfig, heldout_prompts: list[str], store: RunStore) -> Path:
    """The pocket base directory for this config, built once and shared by every run."""
    key = pocket_key(cfg, template, heldout_prompts)
    return store.cached_build("pocket-base", key, lambda out: build_pocket(cfg, template, heldout_prompts, out))


# --- evaluation of the base ------------------------------------------------------------------


def accuracy_by_style(model: Any, tokenizer: Any, rows: list[dict], template: TemplateConfig, samples: int = 4,
                      temperature: float = 1.0, max_new_tokens: int = 160) -> dict[str, Any]:
    """Held-out accuracy of the base as it samples (temperature 1: its natural mix of styles), split
    by whether it wrote out steps or answered directly and by item length; plus greedy accuracy."""
    prompts = [render(tokenizer, messages(r["prompt"], template)) for r in rows]
    sampled = generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens, temperature=temperature,
                       n=samples, seed=0, desc="evaluating base (sampled)")
    greedy = generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens, desc="evaluating base (greedy)")
    cells: dict[str, list[float]] = {}
    lengths = []
    for row, completions in zip(rows, sampled, strict=True):
        terms = pocket.terms_of(row["metadata"])
        size = "long" if terms and len(terms) >= 4 else "short"
        for comp in completions:
            v = judge_completion(comp, row, "en")
            correct, style = float(v.correct), "steps" if v.wrote_work else "direct"
            for cell in ("all", style, size, f"{size}_{style}"):
                cells.setdefault(cell, []).append(correct)
            lengths.append(comp.num_tokens)
    metrics: dict[str, Any] = {f"accuracy_{k}": sum(v) / len(v) for k, v in sorted(cells.items())}
    metrics.update({f"count_{k}": len(v) for k, v in sorted(cells.items())})
    metrics["steps_share"] = len(cells.get("steps", [])) / len(lengths)
    metrics["mean_length"] = sum(lengths) / len(lengths)
    metrics["greedy_accuracy"] = sum(
        bool(judge_completion(c, r, "en").correct) for r, (c,) in zip(rows, greedy, strict=True)) / len(rows)
    metrics["samples_per_prompt"], metrics["temperature"] = samples, temperature
    return metrics


def load(path: str | Path) -> tuple[Any, Any]:
    """(model, tokenizer) from a base reference's path."""
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    model = AutoModelForCausalLM.from_pretrained(str(path))
    return model, tokenizer


def run(call: StageCall) -> StageOutcome:
    """The base model: the pocket base (built once, then its held-out accuracy by style), or a user's
    model recorded and hashed."""
    cfg, recipe = call.cfg, call.recipe
    model_path, task_data_ref = recipe.model.base, call.inputs["task_data"]

    def build(work: Path) -> StageResult:
        if model_path != "pocket":
            # A user's model: a local directory is hashed by content, a hub id by name.
            return StageResult(metrics={"model": model_path}, artifact=Path(model_path))
        heldout = load_split(task_data_ref, "heldout")
        path = pocket_base(cfg, recipe.data.template, list(heldout["prompt"]), call.store)
        model, tokenizer = load(path)
        metrics = accuracy_by_style(model, tokenizer, list(heldout), recipe.data.template)
        metrics["parameters"] = model.num_parameters()
        (work / "eval.json").write_text(json.dumps(metrics, indent=2))
        return StageResult(metrics=metrics, artifact=path)

    # the pocket base is written to the shared cache (same disk); a user's model is only hashed
    return call.run(build, needs_bytes=pocket_bytes(cfg) if model_path == "pocket" else None)


def run_student(call: StageCall) -> StageOutcome:
    """The distillation student: a smaller pocket base built like the base, or a user's model."""
    cfg, recipe = call.cfg, call.recipe
    model_path, task_data_ref = recipe.distill.student_model, call.inputs["task_data"]

    def build(work: Path) -> StageResult:
        if model_path != "pocket":
            return StageResult(metrics={"model": model_path}, artifact=Path(model_path))
        heldout = list(load_split(task_data_ref, "heldout")["prompt"])
        return StageResult(artifact=pocket_base(cfg, recipe.data.template, heldout, call.store))

    return call.run(build, needs_bytes=pocket_bytes(cfg) if model_path == "pocket" else None)
