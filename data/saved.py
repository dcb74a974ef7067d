"""Datasets that stages save into their directories, loaded back from a stage's Ref."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import datasets

from core.layout import DATASET

SPLITS = ("train", "heldout", "harder")


def load_split(ref: Any, part: str) -> datasets.Dataset:
    """The 'train', 'heldout' or 'harder' split saved by the task_data stage ('harder' may be empty)."""
    if part not in SPLITS:
        raise ValueError(f"split {part!r}: expected one of {SPLITS}")
    return datasets.load_from_disk(str(Path(ref.path) / part))


def load_sft_dataset(ref: Any) -> datasets.Dataset:
    """The {prompt, completion} conversations a stage saved (cold start, rejection sampling)."""
    return datasets.load_from_disk(str(Path(ref.path) / DATASET))
