"""Monitor rewards: statistics of the completions that a GRPO stage hands TRL with weight 0, so TRL
logs them at every step next to the real rewards (rewards/<name>/mean) without training on them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rewards.completions import text_of
from rewards.extract import think_text
from rewards.reflection import reflection_count


def reflection_words(text: str) -> float:
    """Reflection words (wait, check, ...) in the completion."""
    return float(reflection_count(text))


def reflection_rate(text: str) -> float:
    """Reflection words per word of the chain of thought (of the whole text when it has none)."""
    words = max(1, len(think_text(text).split()) or len(text.split()))
    return reflection_count(text) / words


def reflected(text: str) -> float:
    """1.0 when the completion has a reflection word (it checks or corrects itself), else 0.0."""
    return float(reflection_count(text) > 0)


def wrote_steps(text: str) -> float:
    """1.0 when the chain of thought writes out work (any digit in it), else 0.0."""
    return float(any(c.isdigit() for c in think_text(text)))


class Monitor:
    """A zero-weight 'reward' that scores each completion with a statistic; a callable object, not a
    closure, so it pickles to the processes of a launched training."""

    def __init__(self, statistic: Callable[[str], float]):
        self.statistic = statistic
        self.__name__ = statistic.__name__  # TRL logs rewards/<__name__>/mean

    def __repr__(self) -> str:
        return f"Monitor({self.__name__!r})"

    def __call__(self, completions: list[Any], **_: Any) -> list[float]:
        return [self.statistic(text_of(c)) for c in completions]


STATISTICS = (reflection_words, reflection_rate, reflected, wrote_steps)
NAMES = frozenset(s.__name__ for s in STATISTICS)  # the run report tells monitors from rewards by these


def monitors() -> list[Monitor]:
    """The statistics every GRPO stage logs besides its rewards."""
    return [Monitor(s) for s in STATISTICS]
