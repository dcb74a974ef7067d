"""What a GRPO stage hands TRL: the recipe's rewards, each applied to the rows it judges, plus the
zero-weight monitors (rewards/monitors.py).

A reward spec's `rows` says which rows it judges: "verifiable" (rows with a gold answer), "general"
(rows without one, e.g. for the reward model) or "all". On the other rows it scores None ("cannot
judge"), which TRL leaves out of the weighted sum.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from rewards import catalog
from rewards.monitors import monitors


class RowRouted:
    """A reward applied only to rows whose `kind` column is `rows` ('verifiable' or 'general'); the
    others score None. A callable object, not a closure, so it pickles to launched processes."""

    def __init__(self, func: Callable[..., list[float | None]], rows: str):
        self.func, self.rows = func, rows
        self.__name__ = getattr(func, "__name__", "reward")

    def __repr__(self) -> str:
        return f"RowRouted({self.__name__!r}, rows={self.rows!r})"

    def __call__(self, completions: list[Any], kind: list[str] | None = None, **kwargs: Any) -> list[float | None]:
        n = len(completions)
        kinds = kind or ["verifiable"] * n
        keep = [i for i, k in enumerate(kinds) if k == self.rows]
        out: list[float | None] = [None] * n
        if keep:
            sub = {k: [v[i] for i in keep] if isinstance(v, list) and len(v) == n else v for k, v in kwargs.items()}
            scores = self.func([completions[i] for i in keep], kind=[kinds[i] for i in keep], **sub)
            for i, score in zip(keep, scores, strict=True):
                out[i] = score
        return out


def route(func: Callable[..., list[float | None]], rows: str) -> Callable[..., list[float | None]]:
    """`func` applied to the rows it judges (`rows`: all, verifiable or general)."""
    return func if rows == "all" else RowRouted(func, rows)


def grpo_rewards(specs: Sequence[Any], **context: Any) -> tuple[list[Callable], list[float]]:
    """(reward functions, weights) for TRL's GRPOTrainer: the specs' rewards, routed to their rows,
    then the monitors with weight 0. `context` supplies what a reward needs (reward_model_path)."""
    funcs, weights = catalog.build(specs, **context)
    funcs = [route(f, spec.rows) for f, spec in zip(funcs, specs, strict=True)]
    extra = monitors()
    return funcs + extra, weights + [0.0] * len(extra)
