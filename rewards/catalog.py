"""The rewards recipes can name: every built-in reward module is imported here (which registers
its functions, rewards/registry.py), and `build` turns a stage's reward specs into TRL-ready
callables. An unknown name lists the known ones."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any

# The built-in reward modules, imported for their @reward registrations.
import rewards.accuracy
import rewards.code
import rewards.format
import rewards.language
import rewards.length
import rewards.reward_model  # noqa: F401
from rewards.registry import RewardEntry, registered
from rewards.safety import SafeReward


class UnknownRewardError(ValueError):
    """A reward name that is not registered; the message lists the known ones."""


class RewardParamsError(ValueError):
    """A recipe passes parameters a reward does not take."""


def names() -> list[str]:
    """All registered reward names, sorted."""
    return sorted(registered())


def get(name: str) -> RewardEntry:
    """The registry entry for `name`; UnknownRewardError lists the known names."""
    entries = registered()
    if name not in entries:
        raise UnknownRewardError(f"unknown reward {name!r}; known rewards: {', '.join(sorted(entries))}")
    return entries[name]


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
