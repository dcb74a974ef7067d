"""The safety wrapper: no reward crashes training.

An exception inside a reward is caught; the batch is retried one completion at a time to find the
offender(s); each offender scores the reward's `on_error` value (None, or 0.0 where None is
meaningless); a process-wide counter per reward counts failures; the offending completion is
logged, truncated; and the batch's failure count goes to TRL's `log_metric` as
`rewards/<name>/failures` so it shows in the training logs.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

log = logging.getLogger(__name__)

TRUNCATE_CHARS = 200
# Keyword arguments that describe the batch as a whole, not one value per completion.
BATCH_KWARGS = frozenset({"trainer_state", "log_extra", "log_metric", "environments"})

_failures: Counter[str] = Counter()
_lock = threading.Lock()


def failure_counts() -> dict[str, int]:
    """Failures per reward name since the process started."""
    with _lock:
        return dict(_failures)


def _truncate(item: Any) -> str:
    text = item if isinstance(item, str) else repr(item)
    return text if len(text) <= TRUNCATE_CHARS else text[:TRUNCATE_CHARS] + f"... [{len(text)} chars]"


def _one(kwargs: dict[str, Any], i: int, n: int) -> dict[str, Any]:
    """The keyword arguments of completion i alone (per-completion columns sliced, batch ones kept)."""
    out = {}
    for key, value in kwargs.items():
        if key not in BATCH_KWARGS and isinstance(value, Sequence) and not isinstance(value, str | bytes) \
                and len(value) == n:
            out[key] = value[i : i + 1]
        else:
            out[key] = value
    return out


def _checked(name: str, scores: Any, n: int) -> list[float | None]:
    scores = list(scores)
    if len(scores) != n:
        raise ValueError(f"reward {name!r} returned {len(scores)} scores for {n} completions")
    out = []
    for s in scores:
        if s is None:
            out.append(None)
            continue
        s = float(s)
        if math.isnan(s):  # TRL reads NaN as "cannot judge" already; say it with None
            out.append(None)
        elif math.isinf(s):
            raise ValueError(f"reward {name!r} returned {s}; rewards must be finite")
        else:
            out.append(s)
    return out


class SafeReward:
    """A reward function that never raises; a callable object (not a closure) so it pickles."""

    def __init__(self, name: str, func: Callable[..., Any], on_error: float | None = None):
        self.__name__ = name  # TRL logs rewards/<__name__>/mean
        self.func = func
        self.on_error = on_error

    def __repr__(self) -> str:
        return f"SafeReward({self.__name__!r})"

    def __call__(self, completions: list[Any], **kwargs: Any) -> list[float | None]:
        n = len(completions)
        try:
            scores = _checked(self.__name__, self.func(completions=completions, **kwargs), n)
            failed = 0
        except Exception as exc:
            scores, failed = self._isolate(completions, kwargs)
            if not failed:  # the batch failed but no completion alone does: still say so
                log.warning("reward %r failed on a batch of %d (%s: %s) but on none of its completions alone",
                            self.__name__, n, type(exc).__name__, exc)
        log_metric = kwargs.get("log_metric")
        if callable(log_metric):
            log_metric(f"rewards/{self.__name__}/failures", float(failed))
        return scores

    def _isolate(self, completions: list[Any], kwargs: dict[str, Any]) -> tuple[list[float | None], int]:
        """Retry completion by completion; offenders score `on_error`, are counted and logged."""
        n = len(completions)
        scores: list[float | None] = []
        failed = 0
        for i, completion in enumerate(completions):
            try:
                scores.extend(_checked(self.__name__, self.func(completions=[completion], **_one(kwargs, i, n)), 1))
            except Exception as exc:
                failed += 1
                scores.append(self.on_error)
                log.warning("reward %r failed on completion %d (%s: %s); it scores %s. completion: %s",
                            self.__name__, i, type(exc).__name__, exc, self.on_error, _truncate(completion))
        with _lock:
            _failures[self.__name__] += failed
        return scores, failed
