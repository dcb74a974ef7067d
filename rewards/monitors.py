"""Monitor rewards: statistics of the completions that a GRPO stage hands TRL with weight 0, so TRL
logs them at every step next to the real rewards (rewards/<name>/mean) without training on them.
Each reads the completion's verdict (rewards/verdict.py), as the evaluation and the base's report do."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rewards.completions import column, prefilled_flags, text_of, user_text
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


class RolloutLog:
    """A zero-weight 'reward' that scores nothing (None: TRL leaves it out of every mean) and appends
    each rollout it is shown to a JSONL file: the optimizer step, the user's prompt, the completion,
    its length in tokens and the row's gold columns. Offline analyses of the rollouts (the ablation
    lab's) read it instead of sampling again. A callable object, so it pickles to launched processes;
    with several processes each appends its own lines (RANK in each line)."""

    __name__ = "rollout_log"

    def __init__(self, path: str | Path):
        self.path = str(path)

    def __repr__(self) -> str:
        return f"RolloutLog({self.path!r})"

    def __call__(self, completions: list[Any], prompts: list[Any] | None = None,
                 completion_ids: list[list[int]] | None = None, trainer_state: Any = None, **columns: Any
                 ) -> list[float | None]:
        n = len(completions)
        step = getattr(trainer_state, "global_step", None)
        gold = {k: column(columns, k, n) for k in ("answer", "task", "metadata", "kind")}
        prompt_list = column({"prompts": prompts}, "prompts", n)
        with open(self.path, "a", encoding="utf-8") as fh:
            for i, completion in enumerate(completions):
                fh.write(json.dumps({
                    "step": step, "rank": int(os.environ.get("RANK", "0")), "prompt": user_text(prompt_list[i]),
                    "completion": text_of(completion),
                    "tokens": len(completion_ids[i]) if completion_ids is not None else None,
                    **{k: v[i] for k, v in gold.items()}}) + "\n")
        return [None] * n


STATISTICS = (reflection_words, reflection_rate, reflected, wrote_steps)
# the run report tells monitors from rewards by these
NAMES = frozenset(s.__name__ for s in STATISTICS) | {RolloutLog.__name__}


def monitors() -> list[Monitor]:
    """The statistics every GRPO stage logs besides its rewards."""
    return [Monitor(s) for s in STATISTICS]
