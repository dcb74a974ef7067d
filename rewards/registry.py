"""The reward registry: reward modules register their functions with `@reward("name")`; a
duplicate name is an error (the lm-evaluation-harness registry habit). Looking rewards up by name
and building them for a trainer is rewards/catalog.py, which imports every built-in reward module.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any


@dataclass(frozen=True)
class RewardEntry:
    name: str
    func: Callable[..., list[float | None]]
    on_error: float | None  # what a completion scores when the reward raises on it
    context: tuple[str, ...]  # keyword arguments `build` fills from its context (e.g. a model path)
    check: Callable[[dict[str, Any]], str | None] | None = None  # load-time check of params -> a note


_REGISTRY: dict[str, RewardEntry] = {}


def reward(name: str, on_error: float | None = None, context: Sequence[str] = (),
           check: Callable[[dict[str, Any]], str | None] | None = None) -> Callable:
    """Register a reward function under `name`.

    Args:
        on_error: the score of a completion on which the function raises: None ("cannot judge"), or
            0.0 where None would be meaningless (a malformed completion simply fails the check).
        context: parameter names `build(..., **context)` may supply (e.g. `reward_model_path`).
        check: called with the recipe's params when a recipe is validated; raises ValueError when the
            reward cannot run here as configured, else returns a note for dry runs (or None).
    """

    def register(func: Callable) -> Callable:
        if name in _REGISTRY and _REGISTRY[name].func is not func:
            raise ValueError(f"reward {name!r} is already registered by {_REGISTRY[name].func.__module__}")
        _REGISTRY[name] = RewardEntry(name, func, on_error, tuple(context), check)
        return func

    return register


def registered() -> Mapping[str, RewardEntry]:
    """Every reward registered so far, by name (read-only)."""
    return MappingProxyType(_REGISTRY)
