"""Verifying an extracted answer against the gold one.

reasoning-gym tasks are scored by reasoning-gym's own `score_answer`; other answers by math-verify
(numeric and symbolic equivalence: 0.5 = 1/2 = \\frac{1}{2}) when the gold parses as math, and by
normalised exact match otherwise. A gold answer that cannot be read gives None, never 1.0.
"""

from __future__ import annotations

import functools
import json
import re
import unicodedata
from typing import Any

from rewards.extract import extract_answer

_NUMBER_RE = re.compile(r"^[+-]?\d{1,3}(,\d{3})+(\.\d+)?$")


def normalize(text: str) -> str:
    """Case-, width- and space-insensitive form; unicode digits become ASCII; 1,234 -> 1234."""
    text = unicodedata.normalize("NFKC", text)
    text = "".join(str(unicodedata.digit(c)) if c.isdigit() and not c.isascii() else c for c in text)
    text = " ".join(text.strip().strip(".").split()).lower()
    if _NUMBER_RE.match(text):
        text = text.replace(",", "")
    return text


@functools.cache
def _reasoning_gym_scorer(task: str):
    try:
        import reasoning_gym

        return reasoning_gym.get_score_answer_fn(task)
    except Exception:  # not a reasoning-gym task name
        return None


def _math(text: str) -> list[Any]:
    from math_verify import parse

    # math-verify reads bare numbers and LaTeX best when the text is wrapped as inline math.
    parsed = parse(text, parsing_timeout=None)
    return parsed or parse(f"${text}$", parsing_timeout=None)


def verify(predicted: str | None, gold: Any, task: str | None = None, metadata: Any = None) -> float | None:
    """Score in [0, 1] for an extracted answer, or None when the gold answer cannot be judged."""
    if gold is None or (isinstance(gold, str) and not gold.strip()):
        return None
    gold = str(gold)
    scorer = _reasoning_gym_scorer(task) if task else None
    if scorer is not None:
        meta = json.loads(metadata) if isinstance(metadata, str) and metadata else (metadata or {})
        if predicted is None:
            return 0.0
        return float(scorer(normalize(predicted), {"question": "", "answer": gold, "metadata": meta}))
    gold_math = _math(normalize(gold))
    if gold_math:
        if predicted is None:
            return 0.0
        from math_verify import verify as math_equal

        pred_math = _math(normalize(predicted))
        return 1.0 if pred_math and math_equal(gold_math, pred_math, timeout_seconds=None) else 0.0
    if not normalize(gold):
        return None
    return 1.0 if predicted is not None and normalize(predicted) == normalize(gold) else 0.0


def score_completion(completion: str, gold: Any, task: str | None = None, metadata: Any = None,
                     think_prefilled: bool = False) -> float | None:
    """Extract the final answer from a completion and verify it."""
    return verify(extract_answer(completion, think_prefilled), gold, task, metadata)
