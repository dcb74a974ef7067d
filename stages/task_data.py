"""Stage 0a, the task data: load the recipe's task sources, split train / held-out, save both."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import datasets

from core.runstore import StageOutcome, StageResult
from core.stage import StageCall
from data import sources
from data.split import split


def run(call: StageCall) -> StageOutcome:
    data = call.cfg

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

    return call.run(build)
