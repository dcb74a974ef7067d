"""Datasets that stages save into their directories, loaded back from a stage's Ref."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import datasets

from core.layout import DATASET

SPLITS = ("train", "validation", "test")  # every task data has these
STRESS = ("transfer", "longer")  # saved only when the recipe has them (never empty)


def has_split(ref: Any, part: str) -> bool:
    """Whether the task_data stage saved this split (a stress split exists only when the recipe has one)."""
    return (Path(ref.path) / part).is_dir()


def load_split(ref: Any, part: str) -> datasets.Dataset:
    """A split saved by the task_data stage: train, validation, test, or a stress split it has."""
    if part not in SPLITS + STRESS:
        raise ValueError(f"split {part!r}: expected one of {SPLITS + STRESS}")
    if not has_split(ref, part):
        raise ValueError(f"the task data at {ref.path} has no {part!r} split (the recipe has no data.{part})")
    return datasets.load_from_disk(str(Path(ref.path) / part))


def load_sft_dataset(ref: Any) -> datasets.Dataset:
    """The {prompt, completion} conversations a stage saved (cold start, rejection sampling)."""
    return datasets.load_from_disk(str(Path(ref.path) / DATASET))
