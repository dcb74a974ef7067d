"""The deterministic train / held-out split.

Prompts are de-duplicated (whitespace- and case-insensitively) before splitting, so a prompt is
either held out or trained on, never both; the same rows and seed always give the same split.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import TypeVar

from data.sources import DataError, TaskRow
from rewards.completions import prompt_key

Row = TypeVar("Row", bound=TaskRow)


def split(rows: Iterable[Row], heldout_size: int, seed: int) -> tuple[list[Row], list[Row]]:
    """(train, held-out): duplicates dropped, shuffled by `seed`, the first `heldout_size` held out."""
    unique: dict[str, Row] = {}
    for row in rows:
        unique.setdefault(prompt_key(row["prompt"]), row)
    if len(unique) <= heldout_size:
        raise DataError(f"only {len(unique)} distinct prompts, but heldout_size is {heldout_size}; "
                        "add data or lower data.heldout_size")
    ordered = list(unique.values())
    random.Random(seed).shuffle(ordered)
    return ordered[heldout_size:], ordered[:heldout_size]

