"""Verifying an extracted answer against the gold one, and the `accuracy` reward.

Order of judges:
  1. reasoning-gym tasks (the row's `task` names one) are scored by reasoning-gym's own `score_answer`;
  2. plain numbers on both sides (integers, decimals, fractions; unicode digits and thousands
     separators allowed; any size) are compared exactly as rationals: the fast path, ~100x
     cheaper than math-verify and exact for huge integers where floats are not;
  3. math-verify (numeric and symbolic equivalence: 0.5 = 1/2 = \\frac{1}{2}) when the gold parses as math;
  4. normalised exact match otherwise.
A gold answer that cannot be read (empty, or LaTeX math-verify cannot parse) gives None, never 1.0.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import threading
import unicodedata
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

from rewards.completions import column, prefilled_flags, text_of
from rewards.extract import extract_answer
from rewards.registry import reward

_THOUSANDS_RE = re.compile(r"^[+-]?\d{1,3}(,\d{3})+(\.\d+)?$")
# Exponents are capped at three digits: Fraction("1e999999999") would build a billion-digit integer.
_PLAIN_NUMBER_RE = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d{1,3})?(/[+-]?\d+)?$")
_MATH_MARKERS = re.compile(r"[\\${}^]")
# math-verify's own timeouts use SIGALRM, which only the main thread may set.
MATH_VERIFY_TIMEOUT_S = 3


class _DropTimeoutWarning(logging.Filter):
    """math-verify warns once that its timeout is off; off is deliberate outside the main thread."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Timeout is disabled")


for _name in ("math_verify.parser", "math_verify.grader"):
    logging.getLogger(_name).addFilter(_DropTimeoutWarning())


def normalize(text: str) -> str:
    """Case-, width- and space-insensitive form; unicode digits become ASCII; 1,234 -> 1234."""
    text = unicodedata.normalize("NFKC", text)
    text = "".join(str(unicodedata.digit(c)) if c.isdigit() and not c.isascii() else c for c in text)
    text = " ".join(text.strip().strip(".").split()).lower()
    if _THOUSANDS_RE.match(text):
        text = text.replace(",", "")
    return text


def plain_number(text: str) -> Fraction | None:
    """The exact value of a normalised plain number ('-12', '0.50', '3/4', '2.5e3'), else None."""
    if len(text) > 4000 or not _PLAIN_NUMBER_RE.match(text):  # 4000 digits: Python's int() limit is 4300
        return None
    try:
        return Fraction(text)
    except (ValueError, ZeroDivisionError):
        return None


@functools.cache
def _reasoning_gym_scorer(task: str):
    # reasoning-gym and math-verify cost seconds to import: loaded on the first answer that needs them
    import reasoning_gym
    from reasoning_gym.factory import DATASETS

    # Only names reasoning-gym registers; anything else is not one of its tasks.
    return reasoning_gym.get_score_answer_fn(task) if task in DATASETS else None


def _timeout() -> int | None:
    return MATH_VERIFY_TIMEOUT_S if threading.current_thread() is threading.main_thread() else None


def _math(text: str) -> list[Any]:
    from math_verify import parse

    # An extracted answer is all math: wrapped as inline LaTeX, math-verify reads '2x+1' as 2x+1
    # (bare, it picks the first number, 2). Unwrapped is the fallback for prose-like answers.
    parsed = parse(f"${text}$", parsing_timeout=_timeout())
    return parsed or parse(text, parsing_timeout=_timeout())


def _braces_balanced(text: str) -> bool:
    depth = 0
    for c in text:
        depth += (c == "{") - (c == "}")
        if depth < 0:
            return False
    return depth == 0


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
    gold_norm = normalize(gold)
    if not gold_norm:
        return None
    gold_number = plain_number(gold_norm)
    if gold_number is not None:
        if predicted is None:
            return 0.0
        pred_number = plain_number(normalize(predicted))
        if pred_number is not None:
            return float(pred_number == gold_number)
    looks_like_math = bool(_MATH_MARKERS.search(gold_norm))
    if looks_like_math and not _braces_balanced(gold_norm):
        return None
    gold_math = _math(gold_norm)
    if gold_math:
        if predicted is None:
            return 0.0
        from math_verify import verify as math_equal

        pred_math = _math(normalize(predicted))
        return 1.0 if pred_math and math_equal(gold_math, pred_math, timeout_seconds=_timeout()) else 0.0
    if looks_like_math:  # LaTeX that math-verify cannot read: no honest verdict
        return None
    return 1.0 if predicted is not None and normalize(predicted) == gold_norm else 0.0


def score_completion(completion: str, gold: Any, task: str | None = None, metadata: Any = None,
                     think_prefilled: bool = False) -> float | None:
    """Extract the final answer from a completion and verify it."""
    return verify(extract_answer(completion, think_prefilled), gold, task, metadata)


def is_correct(answer: str | None, row: Mapping[str, Any]) -> bool:
    """Whether an extracted final answer (rewards.extract.extract_answer) is right for a task row
    ({answer, task, metadata}): a full score counts, a partial one or an unjudgeable gold does not.
    The one definition of "correct" that evaluation, rejection sampling and the validation probes use."""
    return (verify(answer, row["answer"], row.get("task"), row.get("metadata")) or 0.0) >= 1.0


@reward("accuracy")
def accuracy(completions: list[Any], answer: list[Any] | None = None, task: list[Any] | None = None,
             metadata: list[Any] | None = None, prompts: list[Any] | None = None,
             think_prefilled: bool | None = None, **kwargs: Any) -> list[float | None]:
    """1.0 when the final answer (see rewards.extract) equals the `answer` column, else 0.0; None if unjudgeable.

    Args:
        think_prefilled: the prompt already ends in `<think>`; default: detected from each prompt.
    """
    n = len(completions)
    cols = {"answer": answer, "task": task, "metadata": metadata}
    golds, tasks, metas = (column(cols, c, n) for c in ("answer", "task", "metadata"))
    flags = prefilled_flags(prompts, n, think_prefilled)
    return [score_completion(text_of(c), g, t, m, f)
            for c, g, t, m, f in zip(completions, golds, tasks, metas, flags, strict=True)]
