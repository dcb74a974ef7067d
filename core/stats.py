"""The estimates the tables report: the unbiased pass@k of one prompt, and 95% bootstrap intervals of
a mean over prompts (one seed) or over seeds and prompts (resample seeds, then prompts within each).

Written here rather than taken from scipy: `scipy.stats.bootstrap` has no two-level resampling, and
these are a dozen lines that bench-paper and the lab must compute identically.
"""

from __future__ import annotations

import math
import random
import statistics


def pass_at_k(n: int, c: int, k: int) -> float:
    """The unbiased pass@k of one prompt from n samples of which c are right (Chen et al. 2021)."""
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def bootstrap(values: list[float], n: int = 2000, seed: int = 0) -> list[float]:
    """95% percentile interval of the mean of `values` (one seed: resample prompts)."""
    rng = random.Random(seed)
    means = sorted(statistics.fmean(rng.choices(values, k=len(values))) for _ in range(n))
    return [means[int(0.025 * n)], means[int(0.975 * n) - 1]]


def bootstrap_seeds(by_seed: list[list[float]], n: int = 2000, seed: int = 0) -> list[float]:
    """95% interval of the mean over seeds and prompts: resample seeds, then prompts within each."""
    rng = random.Random(seed)
    means = []
    for _ in range(n):
        picked = rng.choices(by_seed, k=len(by_seed))
        means.append(statistics.fmean(statistics.fmean(rng.choices(v, k=len(v))) for v in picked))
    means.sort()
    return [means[int(0.025 * n)], means[int(0.975 * n) - 1]]
