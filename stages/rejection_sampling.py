"""Stage 3a, rejection sampling: sample k completions per training prompt from the reasoning-RL
adapter (batched), keep the verified-correct, single-language, finished ones, drop duplicates, mix
in general (non-reasoning) data at the recipe's ratio, and save a `datasets` dataset. The
manifest counts what each filter removed."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path
from typing import Any

import datasets

from core.config import RejectionSamplingConfig
from core.generation import Completion
from core.modeling import load_tokenizer
from core.runstore import Ref, StageOutcome, StageResult
from core.stage import StageCall
from data.chat import messages, render
from data.cold_start import conversation, file_conversations, general_completion
from data.general import general_rows
from data.preferences import dataset_pairs
from data.saved import SFT_DATASET, load_split
from data.split import prompt_key
from rewards.accuracy import is_correct
from rewards.extract import extract_answer, think_text
from rewards.language import language_share
from stages import sampling


def keep_or_reason(row: dict[str, Any], text: str, finished: bool, num_tokens: int, cfg: RejectionSamplingConfig,
                   language: str) -> str | None:
    """None when a sampled completion passes every enabled filter, else the filter that removed it."""
    if not finished or (cfg.max_tokens is not None and num_tokens > cfg.max_tokens):
        return "overlong"
    if cfg.keep_correct and not is_correct(extract_answer(text), row):
        return "incorrect"
    if cfg.keep_single_language and language_share(think_text(text), language) < cfg.language_threshold:
        return "mixed_language"
    return None


def filter_samples(rows: list[dict[str, Any]], samples: list[list[Completion]], cfg: RejectionSamplingConfig,
                   language: str) -> tuple[list[tuple[dict[str, Any], str]], Counter[str]]:
    """The (row, completion text) pairs that pass every filter, duplicates of an earlier kept
    completion of the same prompt dropped, and how many completions each filter removed."""
    removed: Counter[str] = Counter()
    seen: set[tuple[str, str]] = set()
    kept = []
    for row, completions in zip(rows, samples, strict=True):
        for c in completions:
            reason = keep_or_reason(row, c.text, c.finished, c.num_tokens, cfg, language)
            key = (prompt_key(row["prompt"]), " ".join(c.text.split()))
            if reason is None and cfg.dedupe and key in seen:
                reason = "duplicate"
            if reason:
                removed[reason] += 1
                continue
            seen.add(key)
            kept.append((row, c.text.strip()))
    return kept, removed


def sample(recipe: Any, base_ref: Ref, adapter_ref: Ref, prompts: list[str]) -> tuple[str, list[list[Completion]]]:
    """What sampled, and the recipe's k samples per prompt from the adapter."""
    tokenizer = load_tokenizer(base_ref.path, recipe.model.eos_token)
    rendered = [render(tokenizer, messages(p, recipe.data.template)) for p in prompts]
    return sampling.sample_isolated(recipe.rejection_sampling, "rejection_sampling", base_ref, adapter_ref, rendered,
                                    model=recipe.model, seed=recipe.seed, desc="rejection sampling")


def general_data(recipe: Any, n: int) -> list[dict[str, Any]]:
    """`n` general rows as conversations: the recipe's file; else the reward model's preference
    dataset, each prompt with its chosen reply (in the answer tags, as the pocket world's general
    rows: no chain of thought for a non-reasoning query); else the pocket world's general tasks."""
    cfg, template, prefs = recipe.rejection_sampling, recipe.data.template, recipe.reward_model.dataset
    no_gold = {"kind": "general", "answer": "", "task": "general", "metadata": "{}"}
    if cfg.general_dataset:
        ds = file_conversations(cfg.general_dataset, template).shuffle(seed=recipe.seed)
        return [dict(r, **no_gold) for r in ds.select(range(min(n, len(ds))))]
    if prefs is not None:
        pairs, _ = dataset_pairs(prefs, n, 0, recipe.seed)
        return [conversation(p["prompt"][-1]["content"], general_completion(p["chosen"][-1]["content"]), template)
                | no_gold for p in pairs]
    return [conversation(r["prompt"], general_completion(r["answer"]), template) | _gold(r, "general")
            for r in general_rows(n, recipe.seed)]


def _gold(row: dict[str, Any], kind: str) -> dict[str, Any]:
    """The columns that let anyone re-verify a kept row."""
    return {"kind": kind, "answer": row["answer"], "task": row["task"], "metadata": row["metadata"]}


def run(call: StageCall) -> StageOutcome:
    cfg, recipe = call.cfg, call.recipe
    task_data_ref, base_ref, adapter_ref = call.inputs["task_data"], call.inputs["base"], call.inputs["adapter"]
    template, language = recipe.data.template, recipe.data.language

    def build(work: Path) -> StageResult:
        train = load_split(task_data_ref, "train").shuffle(seed=recipe.seed)
        train = list(train.select(range(min(cfg.prompts, len(train)))))
        sampler, samples = sample(recipe, base_ref, adapter_ref, [r["prompt"] for r in train])
        passed, removed = filter_samples(train, samples, cfg, language)
        kept = [conversation(row["prompt"], text, template) | _gold(row, "reasoning") for row, text in passed]
        general = general_data(recipe, round(len(kept) / cfg.reasoning_to_general)) if kept else []
        rows = kept + general
        random.Random(recipe.seed).shuffle(rows)
        datasets.Dataset.from_list(rows).save_to_disk(str(work / SFT_DATASET))
        return StageResult(metrics={
            "prompts": len(train),
            "sampler": sampler,
            "sampled": sum(len(s) for s in samples),
            **{f"removed_{k}": removed.get(k, 0) for k in ("overlong", "incorrect", "mixed_language", "duplicate")},
            "reasoning_rows": len(kept),
            "general_rows": len(general),
            "prompts_with_a_kept_sample": len({prompt_key(r["prompt"][-1]["content"]) for r in kept}),
        })

    return call.run(build)
