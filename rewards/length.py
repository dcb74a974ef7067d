"""Length rewards: DAPO's soft overlong punishment, a cosine length reward scaled by correctness, and a
token-efficiency reward that prefers the shorter of two correct answers (the paper's "overthinks
simple questions" limitation).

Length is the number of completion tokens when TRL passes `completion_ids`, else the number of
whitespace-separated words (direct calls, tests).
"""

from __future__ import annotations

import math
from typing import Any

from trl.rewards import get_soft_overlong_punishment

from rewards.accuracy import score_completion
from rewards.completions import column, prefilled_flags, text_of
from rewards.registry import reward


def lengths(completions: list[Any], completion_ids: list[list[int]] | None = None) -> list[int]:
    """Tokens per completion (from `completion_ids`), or whitespace words when ids are absent."""
    if completion_ids is not None:
        return [len(ids) for ids in completion_ids]
    return [len(text_of(c).split()) for c in completions]


def _correct(completions: list[Any], kwargs: dict[str, Any], prompts: Any,
             think_prefilled: bool | None) -> list[float | None]:
    n = len(completions)
    golds, tasks, metas = (column(kwargs, c, n) for c in ("answer", "task", "metadata"))
    flags = prefilled_flags(prompts, n, think_prefilled)
    return [score_completion(text_of(c), g, t, m, f)
            for c, g, t, m, f in zip(completions, golds, tasks, metas, flags, strict=True)]


@reward("overlong")
def overlong(completions: list[Any], completion_ids: list[list[int]] | None = None,
             max_completion_len: int = 512, soft_punish_cache: int = 128, **kwargs: Any) -> list[float]:
    """DAPO's soft overlong punishment (Eq. 13): 0 up to max-cache, then linear down to -1 at max, -1 beyond.

    TRL's own implementation does the arithmetic; this adds the word-count fallback.
    """
    if not 0 <= soft_punish_cache <= max_completion_len:
        raise ValueError(f"overlong: expected 0 <= soft_punish_cache ({soft_punish_cache}) <= "
                         f"max_completion_len ({max_completion_len})")
    punish = get_soft_overlong_punishment(max_completion_len, soft_punish_cache)
    return punish([[0] * n for n in lengths(completions, completion_ids)])


def cosine(length: int, max_len: int, at_zero: float, at_max: float) -> float:
    """Cosine schedule from `at_zero` (length 0) to `at_max` (length >= max_len)."""
    progress = min(length, max_len) / max_len
    return at_max + 0.5 * (at_zero - at_max) * (1.0 + math.cos(math.pi * progress))


@reward("cosine_length")
def cosine_length(completions: list[Any], completion_ids: list[list[int]] | None = None,
                  prompts: list[Any] | None = None, max_len: int = 512,
                  min_value_correct: float = 0.5, max_value_correct: float = 1.0,
                  min_value_wrong: float = -1.0, max_value_wrong: float = -0.5,
                  think_prefilled: bool | None = None, **kwargs: Any) -> list[float | None]:
    """Cosine length reward scaled by correctness (Yeo et al. 2025, as in open-r1).

    A correct answer earns max_value_correct at length 0 falling to min_value_correct at max_len
    (short and right is best); a wrong one earns min_value_wrong at length 0 rising to
    max_value_wrong at max_len (if wrong, at least think longer). Unjudgeable: None.
    """
    if max_len <= 0:
        raise ValueError(f"cosine_length: expected max_len > 0, got {max_len}")
    out: list[float | None] = []
    for n, score in zip(lengths(completions, completion_ids), _correct(completions, kwargs, prompts, think_prefilled),
                        strict=True):
        if score is None:
            out.append(None)
        elif score >= 1.0:
            out.append(cosine(n, max_len, max_value_correct, min_value_correct))
        else:
            out.append(cosine(n, max_len, min_value_wrong, max_value_wrong))
    return out


def _group_key(prompt: Any) -> str:
    return prompt if isinstance(prompt, str) else repr(prompt)


@reward("token_efficiency")
def token_efficiency(completions: list[Any], completion_ids: list[list[int]] | None = None,
                     prompts: list[Any] | None = None, think_prefilled: bool | None = None,
                     **kwargs: Any) -> list[float | None]:
    """Kimi k1.5's length reward within each prompt's group of completions: the shorter of two correct
    answers scores higher.

    With L the length and min/max taken over the group: lam = 0.5 - (L - min) / (max - min);
    correct completions score lam, wrong ones min(0, lam), unjudgeable ones None; a group whose
    lengths are all equal scores 0.
    """
    n = len(completions)
    lens = lengths(completions, completion_ids)
    scores = _correct(completions, kwargs, prompts, think_prefilled)
    groups: dict[str, list[int]] = {}
    for i, prompt in enumerate(column({"prompts": prompts}, "prompts", n)):
        groups.setdefault(_group_key(prompt), []).append(i)
    out: list[float | None] = [None] * n
    for members in groups.values():
        lo, hi = min(lens[i] for i in members), max(lens[i] for i in members)
        for i in members:
            lam = 0.0 if hi == lo else 0.5 - (lens[i] - lo) / (hi - lo)
            if scores[i] is not None:
                out[i] = lam if scores[i] >= 1.0 else min(0.0, lam)
    return out
