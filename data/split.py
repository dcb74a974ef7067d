"""The deterministic split of the task data: test, validation and train.

Prompts are de-duplicated (whitespace- and case-insensitively) before splitting, so a prompt is in
one split only; the same rows and seed always give the same split. Test is drawn first, then
validation, the rest is train.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import TypeVar

from data.sources import DataError, TaskRow
from rewards.completions import prompt_key

Row = TypeVar("Row", bound=TaskRow)
VALIDATION_SHARE, VALIDATION_MAX = 0.1, 200  # a validation split carved when the recipe sizes none


def split(rows: Iterable[Row], test_size: int, validation_size: int | None, seed: int
          ) -> tuple[list[Row], list[Row], list[Row]]:
    """(train, validation, test): duplicates dropped, shuffled by `seed`, the first `test_size` for
    test, the next `validation_size` (default: a tenth, at most 200) for validation."""
    unique: dict[str, Row] = {}
    for row in rows:
        unique.setdefault(prompt_key(row["prompt"]), row)
    n = len(unique)
    if validation_size is None:
        validation_size = max(1, min(VALIDATION_MAX, int(n * VALIDATION_SHARE)))
    if n <= test_size + validation_size:
        raise DataError(f"only {n} distinct prompts, but data.test_size {test_size} + data.validation_size "
                        f"{validation_size} leave none to train on; add data or lower them")
    ordered = list(unique.values())
    random.Random(seed).shuffle(ordered)
    held = test_size + validation_size
    return ordered[held:], ordered[test_size:held], ordered[:test_size]
