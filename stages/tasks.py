"""Stage 0a: the task data. Loads the recipe's sources, splits train / held-out, saves both."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import datasets

from core.config import Recipe
from core.runstore import Ref, RunStore, StageResult
from data import sources
from data.split import split

STAGE = "tasks"


def run(recipe: Recipe, store: RunStore, run_id: str, force: bool = False) -> Ref:
    data = recipe.data

    def build(work: Path) -> StageResult:
        datasets.disable_progress_bars()  # saving a few hundred rows needs no bar
        train, heldout = split(sources.rows(data.sources, data.seed), data.heldout_size, data.seed)
        for name, part in (("train", train), ("heldout", heldout)):
            datasets.Dataset.from_list(part).save_to_disk(str(work / name))
        return StageResult(metrics={
            "train_rows": len(train),
            "heldout_rows": len(heldout),
            "train_tasks": dict(Counter(r["task"] for r in train)),
        })

    return store.run_stage(run_id, STAGE, data.model_dump(mode="json"), {}, build, force=force)
