"""Reflection words: the paper's signal of self-checking in a chain of thought ("aha" moments)."""

from __future__ import annotations

import re
from collections import Counter

REFLECTION_WORDS = ("wait", "mistake", "however", "but", "retry", "error", "verify", "wrong", "evaluate", "check")
_REFLECTION_RE = re.compile(r"\b(" + "|".join(REFLECTION_WORDS) + r")\b", re.IGNORECASE)


def reflection_counts(text: str) -> Counter[str]:
    """How often each reflection word occurs as a whole word (case-insensitive)."""
    return Counter(m.lower() for m in _REFLECTION_RE.findall(text))


def reflection_count(text: str) -> int:
    """Number of reflection words in `text`: whole words, any case ('Wait' counts, 'waiting' does not)."""
    return len(_REFLECTION_RE.findall(text))
