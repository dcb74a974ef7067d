"""Stage 3a, rejection sampling: sample k completions per training prompt from the reasoning-RL
adapter (batched), keep the verified-correct, single-language, finished ones, drop duplicates, mix
in general (non-reasoning) data at the recipe's ratio, and save a `datasets` dataset. The
manifest counts what each filter removed."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import datasets

from core.config import RejectionSamplingConfig
from core.generation import Completion
from core.layout import DATASET
from core.modeling import load_tokenizer
from core.runstore import Ref, StageOutcome, StageResult
from core.stage import StageCall
from data.chat import messages, render
from data.cold_start import conversation
from data.saved import load_split
from rewards.completions import prompt_key, think_prefilled
from rewards.verdict import Keep, select
from stages import sampling
from stages.general import general_rows


def keep_rules(cfg: RejectionSamplingConfig) -> Keep:
    """What rejection sampling keeps: finished and not overlong; verified and single-language when
    the recipe asks; one copy of each text per prompt when it dedupes."""
    return Keep(correct=cfg.keep_correct, language_threshold=cfg.language_threshold if cfg.keep_single_language
                else None, max_tokens=cfg.max_tokens, dedupe=cfg.dedupe)


def sample(recipe: Any, base_ref: Ref, adapter_ref: Ref, prompts: list[str]
           ) -> tuple[str, list[bool], list[list[Completion]]]:
    """What sampled, whether each rendered prompt pre-fills `<think>`, and the recipe's k samples per
    prompt from the adapter."""
    tokenizer = load_tokenizer(base_ref.path, recipe.model.eos_token)
    rendered = [render(tokenizer, messages(p, recipe.data.template)) for p in prompts]
    sampler, samples = sampling.sample_isolated(recipe.rejection_sampling, "rejection_sampling", base_ref,
                                                adapter_ref, rendered, model=recipe.model, seed=recipe.seed,
                                                desc="rejection sampling")
    return sampler, [think_prefilled(r) for r in rendered], samples


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
        sampler, prefilled, samples = sample(recipe, base_ref, adapter_ref, [r["prompt"] for r in train])
        passed, removed = select(train, samples, keep_rules(cfg), language, prefilled)
        kept = [conversation(row["prompt"], text, template) | _gold(row, "reasoning") for row, text in passed]
        n_general = round(len(kept) / cfg.reasoning_to_general) if kept else 0
        general = [conversation(r["prompt"], r["reply"], template) | _gold(r, "general")
                   for r in general_rows(recipe, n_general, recipe.seed)] if n_general else []
        rows = kept + general
        random.Random(recipe.seed).shuffle(rows)
        datasets.Dataset.from_list(rows).save_to_disk(str(work / DATASET))
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
