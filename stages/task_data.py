"""Stage 0a, the task data: load the recipe's task sources, split train / held-out, and the harder
items (never trained on, prompts of the other splits removed); save all three."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import datasets

from core.runstore import StageOutcome, StageResult
from core.stage import StageCall
from data import sources
from data.split import split
from rewards.completions import prompt_key


def run(call: StageCall) -> StageOutcome:
    data = call.cfg

    def build(work: Path) -> StageResult:
        datasets.disable_progress_bars()  # saving a few hundred rows needs no bar
        skipped: Counter[str] = Counter()
        train, heldout = split(sources.rows(data.sources, data.seed, skipped=skipped), data.heldout_size, data.seed)
        seen = {prompt_key(r["prompt"]) for r in train + heldout}
        harder = list({prompt_key(r["prompt"]): r for r in sources.rows(data.harder, data.seed)
                       if prompt_key(r["prompt"]) not in seen}.values())
        for name, part in (("train", train), ("heldout", heldout), ("harder", harder)):
            columns = {c: [] for c in (train[0] if train else {})}
            (datasets.Dataset.from_list(part) if part else datasets.Dataset.from_dict(columns)).save_to_disk(
                str(work / name))
        return StageResult(metrics={
            "train_rows": len(train),
            "heldout_rows": len(heldout),
            "harder_rows": len(harder),
            "train_tasks": dict(Counter(r["task"] for r in train)),
            "skipped_rows": dict(skipped),  # rows dropped by a source's on_bad_row: skip, per task
        })

    return call.run(build)
