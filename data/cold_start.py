"""Cold-start and SFT data: readable, single-language, first-person chains of thought.

For the pocket world they are generated from templates that compute correct step-by-step
solutions (the paper's cold start was a few thousand such examples, written for readability:
`<think>` reasoning ending in a short summary `</think>`, then the answer). Real recipes point
`cold_start.dataset` at a file of {prompt, completion} rows instead.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import datasets

from core.config import TemplateConfig
from data import pocket
from data.chat import messages


def chain_sum_completion(terms: list[int]) -> str:
    """The readable English solution of a chain sum, as the cold-start set writes it: the work, closed
    by a one-line summary ("so the answer is 3 ."), then the answer. A second summary between
    `</think>` and `<answer>` was tried: 300 examples only half taught it and the mix broke the answer
    tag ("<answer> <answer>"), cutting pass@1 0.72 -> 0.55; without it the cold start lifts it to 0.92."""
    think = pocket.steps_text(terms, ["en"] * len(terms))
    return f"<think> {think} </think> <answer> {sum(terms)} </answer>"


def general_completion(answer: str) -> str:
    """A short, well-formed reply to a general (non-reasoning) task."""
    return f"<think> i read the question and answer it directly . </think> <answer> {answer} </answer>"


def conversation(prompt: str, completion: str, template: TemplateConfig) -> dict[str, Any]:
    """A TRL conversational prompt-completion row (SFT puts the loss on the completion only)."""
    return {"prompt": messages(prompt, template), "completion": [{"role": "assistant", "content": completion}]}


def pocket_cold_start(train: datasets.Dataset, n: int, seed: int, template: TemplateConfig) -> datasets.Dataset:
    """`n` cold-start conversations built from chain-sum training prompts."""
    rows = [r for r in train if pocket.terms_of(r["metadata"])]
    if not rows:
        raise ValueError("the pocket cold start needs chain_sum training prompts; set cold_start.dataset instead")
    picked = random.Random(seed).sample(rows, min(n, len(rows)))
    return datasets.Dataset.from_list([
        conversation(r["prompt"], chain_sum_completion(pocket.terms_of(r["metadata"])), template) for r in picked
    ])


def file_conversations(path: str, template: TemplateConfig) -> datasets.Dataset:
    """A user's file (.jsonl/.json/.parquet) of `prompt` / `completion` rows as conversations: the
    cold-start set of a real recipe, or rejection sampling's general data."""
    suffix = Path(path).suffix.lower()
    loader = "parquet" if suffix == ".parquet" else "json"
    ds = datasets.load_dataset(loader, data_files=path, split="train")
    missing = {"prompt", "completion"} - set(ds.column_names)
    if missing:
        raise ValueError(f"{path}: expected columns prompt and completion; missing {sorted(missing)}")
    return ds.map(lambda r: conversation(r["prompt"], r["completion"], template), remove_columns=ds.column_names)
