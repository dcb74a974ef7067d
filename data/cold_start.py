"""Cold-start and SFT data: readable, single-language, first-person chains of thought.

The paper's cold start was a few thousand readable examples (`<think>` reasoning ending in a short
summary `</think>`, then the answer), collected from few-shot prompting with long worked examples
and from R1-Zero's own outputs, kept only when verified and readable, then rewritten. Here:
  * generated: the pocket world's oracle writes correct step-by-step solutions (pocket/cold_start.py);
  * file: the user's {prompt, completion} rows;
  * collected (r1_zero, few_shot): a model's sampled completions, filtered by rewards/verdict.py, rewritten
    by `readable` and capped by `collect` (the sampling itself is the stage's, stages/cold_start_data.py).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import datasets

from core.config import CollectConfig, Exemplar, TemplateConfig
from core.generation import Completion
from data.chat import messages
from data.sources import DataError
from rewards.verdict import REASONS, Keep, Verdict, select

# Why a collected completion was removed, in the order the filters run.
REMOVED = (*REASONS, "over_cap")


def general_completion(answer: str) -> str:
    """A short, well-formed reply to a general (non-reasoning) task."""
    return f"<think> i read the question and answer it directly . </think> <answer> {answer} </answer>"


def conversation(prompt: str, completion: str, template: TemplateConfig) -> dict[str, Any]:
    """A TRL conversational prompt-completion row (SFT puts the loss on the completion only)."""
    return {"prompt": messages(prompt, template), "completion": [{"role": "assistant", "content": completion}]}


def file_rows(path: str, setting: str) -> datasets.Dataset:
    """A user's file (.jsonl/.json/.parquet) of `prompt` / `completion` rows; `setting` is the recipe
    key that names it, for errors."""
    if not Path(path).is_file():
        raise DataError(f"{setting} {path}: file not found")
    loader = "parquet" if Path(path).suffix.lower() == ".parquet" else "json"
    ds = datasets.load_dataset(loader, data_files=path, split="train")
    missing = {"prompt", "completion"} - set(ds.column_names)
    if missing:
        raise DataError(f"{setting} {path}: expected columns prompt and completion; missing {sorted(missing)}")
    return ds


def file_conversations(path: str, template: TemplateConfig, setting: str = "cold_start.dataset") -> datasets.Dataset:
    """A user's file of `prompt` / `completion` rows as conversations: the cold-start set of a real recipe."""
    ds = file_rows(path, setting)
    return ds.map(lambda r: conversation(r["prompt"], r["completion"], template), remove_columns=ds.column_names)


# --- collected cold starts (sources r1_zero and few_shot) ------------------------------------

def few_shot_messages(prompt: str, exemplars: Sequence[Exemplar], template: TemplateConfig) -> list[dict[str, str]]:
    """The conversation for few-shot sampling: each exemplar as an earlier user / assistant turn."""
    head = messages(exemplars[0].prompt, template) if exemplars else []
    turns = head[:-1]  # the system message, if any
    for ex in exemplars:
        turns += messages(ex.prompt, template)[-1:] + [{"role": "assistant", "content": ex.completion}]
    return turns + messages(prompt, template)[-1:]


def readable(v: Verdict, summary: str) -> str:
    """A kept completion in the cold start's format: the reasoning closed by a one-line summary (added
    when it has none), then the answer in tags; nothing else."""
    think, answer = v.think, v.answer or ""
    line = summary.format(answer=answer)
    if not " ".join(think.split()).endswith(" ".join(line.split())):
        think = f"{think}\n\n{line}" if "\n" in think else f"{think} {line}"
    return f"<think> {think.strip()} </think> <answer> {answer} </answer>"


def collect(rows: Sequence[dict[str, Any]], samples: Sequence[Sequence[Completion]], cfg: CollectConfig,
            examples: int, language: str, template: TemplateConfig, seed: int, source: str,
            prefilled: Sequence[bool]) -> tuple[list[dict[str, Any]], Counter[str]]:
    """The cold-start rows collected from `samples[i]`, the completions of task row `rows[i]` (whose
    rendered prompt pre-filled `<think>` when `prefilled[i]`): verified, readable, rewritten,
    deduplicated, at most `cfg.per_prompt` per prompt and `examples` in all. Returns the rows
    (conversations plus the gold columns that let anyone re-verify them) and what each filter
    removed (`REMOVED`); kept + removed = sampled."""
    keep = Keep(correct=True, well_formed=True, language_threshold=cfg.language_threshold, no_repeats=True,
                max_tokens=cfg.max_tokens, per_prompt=cfg.per_prompt)
    passed, removed = select(rows, samples, keep, language, prefilled, lambda v: readable(v, cfg.summary))
    kept = [conversation(row["prompt"], text, template) | {
        "source": source, "answer": row["answer"], "task": row["task"], "metadata": row["metadata"]}
        for row, text in passed]
    random.Random(seed).shuffle(kept)
    removed["over_cap"] += max(0, len(kept) - examples)
    return kept[:examples], removed
