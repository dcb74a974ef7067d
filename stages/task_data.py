"""Stage 0a, the task data: load the recipe's task sources and split them into train, validation
and test; load the stress splits (transfer, longer: never trained on), with any prompt of the other
splits removed. Every split is saved but an empty stress split, which a recipe without one lacks."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import datasets

from core.config import STRESS_SPLITS
from core.runstore import StageOutcome, StageResult
from core.stage import StageCall
from data import sources
from data.split import split
from rewards.completions import prompt_key


def splits(data: Any, seed: int, skipped: Counter[str] | None = None) -> dict[str, list[dict[str, Any]]]:
    """The recipe's task data as its splits: train, validation and test from the sources, then each
    stress split the recipe has (rows of the other splits removed; an empty one left out)."""
    train, validation, test = split(sources.rows(data.sources, seed, skipped=skipped), data.test_size,
                                    data.validation_size, seed)
    parts = {"train": train, "validation": validation, "test": test}
    seen = {prompt_key(r["prompt"]) for part in parts.values() for r in part}
    for n, name in enumerate(STRESS_SPLITS, start=1):
        # each stress split draws streams of the world's seed of its own
        drawn = sources.rows(getattr(data, name), seed, first_stream=100 * n)
        stress = list({prompt_key(r["prompt"]): r for r in drawn if prompt_key(r["prompt"]) not in seen}.values())
        seen |= {prompt_key(r["prompt"]) for r in stress}
        if stress:
            parts[name] = stress
    return parts


def run(call: StageCall) -> StageOutcome:
    data = call.cfg
    seed = call.recipe.seed if data.seed is None else data.seed

    def build(work: Path) -> StageResult:
        datasets.disable_progress_bars()  # saving a few hundred rows needs no bar
        skipped: Counter[str] = Counter()
        parts = splits(data, seed, skipped)
        for name, part in parts.items():
            datasets.Dataset.from_list(part).save_to_disk(str(work / name))
        return StageResult(metrics={
            **{f"{name}_rows": len(part) for name, part in parts.items()},
            "seed": seed,
            "train_tasks": dict(Counter(r["task"] for r in parts["train"])),
            "skipped_rows": dict(skipped),  # rows dropped by a source's on_bad_row: skip, per task
        })

    return call.run(build)
