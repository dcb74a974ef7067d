"""The reward registry: recipes name rewards, `build` turns names into TRL-ready callables.

Reward modules register their functions with `@reward("name")`; a duplicate name is an error and
an unknown one lists the known names (the lm-evaluation-harness registry habit).
"""

from __future__ import annotations

import functools
import importlib
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

# Modules whose import registers the built-in rewards (imported on first lookup, not at package
# import, so `rewards.extract` stays light for code that only extracts answers).
BUILTIN_MODULES = (
    "rewards.accuracy",
    "rewards.format",
    "rewards.language",
    "rewards.length",
    "rewards.code",
    "rewards.reward_model",
)


class UnknownRewardError(ValueError):
    """A reward name that is not registered; the message lists the known ones."""


class RewardParamsError(ValueError):
    """A recipe passes parameters a reward does not take."""


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


@functools.cache
def _load_builtins() -> None:
    for module in BUILTIN_MODULES:
        importlib.import_module(module)


def names() -> list[str]:
    """All registered reward names, sorted."""
    _load_builtins()
    return sorted(_REGISTRY)


def get(name: str) -> RewardEntry:
    """The registry entry for `name`; UnknownRewardError lists the known names."""
    _load_builtins()
    if name not in _REGISTRY:
        raise UnknownRewardError(f"unknown reward {name!r}; known rewards: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def _check_params(entry: RewardEntry, params: dict[str, Any]) -> None:
    sig = inspect.signature(entry.func)
    reserved = {"completions", "prompts", "completion_ids"}
    named = {p.name for p in sig.parameters.values()
             if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)} - reserved
    unknown = sorted(set(params) - named)
    clashing = sorted(set(params) & reserved)
    if unknown or clashing:
        raise RewardParamsError(
            f"reward {entry.name!r}: unknown parameter(s) {unknown + clashing}; "
            f"expected some of: {', '.join(sorted(named)) or '(none)'}"
        )


def validate(specs: Sequence[Any]) -> list[str]:
    """Check reward names, parameter names and each reward's own load-time check, without building
    anything heavy; return the checks' notes (e.g. how the code reward's sandbox isolates)."""
    notes = []
    for spec in specs:
        entry = get(spec.name)
        _check_params(entry, dict(spec.params))
        if entry.check is not None and (note := entry.check(dict(spec.params))):
            notes.append(note)
    return notes


def build(specs: Sequence[Any], **context: Any) -> tuple[list[Callable], list[float]]:
    """TRL-ready reward callables (safety-wrapped, named as registered) and their weights.

    `spec.params` are bound as keyword arguments; `context` supplies objects a reward declared it
    needs (e.g. `reward_model_path`) unless the spec's params already give them.
    """
    from rewards.safety import SafeReward

    validate(specs)
    funcs, weights = [], []
    for spec in specs:
        entry = get(spec.name)
        params = {k: v for k, v in context.items() if k in entry.context}
        params.update(spec.params)
        bound = functools.partial(entry.func, **params) if params else entry.func
        funcs.append(SafeReward(entry.name, bound, entry.on_error))
        weights.append(float(spec.weight))
    return funcs, weights
