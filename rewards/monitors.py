"""Monitor rewards: statistics of the completions that a GRPO stage hands TRL with weight 0, so TRL
logs them at every step next to the real rewards (rewards/<name>/mean) without training on them.
Each reads the completion's verdict (rewards/verdict.py), as the evaluation and the base's report do."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rewards.completions import prefilled_flags, text_of
from rewards.verdict import Verdict, judge


def reflection_words(v: Verdict) -> float:
    """Reflection words (wait, check, ...) in the completion."""
    return float(v.reflection_words)


def reflection_rate(v: Verdict) -> float:
    """Reflection words per word of the chain of thought (of the whole text when it has none)."""
    return v.reflection_words / max(1, len(v.think.split()) or len(v.text.split()))


def reflected(v: Verdict) -> float:
    """1.0 when the completion has a reflection word (it checks or corrects itself), else 0.0."""
    return float(v.reflected)


def wrote_steps(v: Verdict) -> float:
    """1.0 when the chain of thought writes out work (any digit in it), else 0.0."""
    return float(v.wrote_work)


class Monitor:
    """A zero-weight 'reward' that scores each completion's verdict with a statistic; a callable
    object, not a closure, so it pickles to the processes of a launched training."""

    def __init__(self, statistic: Callable[[Verdict], float]):
        self.statistic = statistic
        self.__name__ = statistic.__name__  # TRL logs rewards/<__name__>/mean

    def __repr__(self) -> str:
        return f"Monitor({self.__name__!r})"

    def __call__(self, completions: list[Any], prompts: list[Any] | None = None, **_: Any) -> list[float]:
        flags = prefilled_flags(prompts, len(completions), None)
        return [self.statistic(judge(text_of(c), think_prefilled=f)) for c, f in zip(completions, flags, strict=True)]


STATISTICS = (reflection_words, reflection_rate, reflected, wrote_steps)
NAMES = frozenset(s.__name__ for s in STATISTICS)  # the run report tells monitors from rewards by these


def monitors() -> list[Monitor]:
    """The statistics every GRPO stage logs besides its rewards."""
    return [Monitor(s) for s in STATISTICS]
