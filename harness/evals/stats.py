"""Uncertainty for every reported number: percentile bootstrap over items, seeded.

    mean, lo, hi = mean_ci([1, 0, 1, 1])
"""

from __future__ import annotations

import numpy as np

ITERS = 1000


def mean_ci(values: list[float], iters: int = ITERS, seed: int = 0, level: float = 0.95) -> tuple[float, float, float]:
    x = np.asarray(values, dtype=float)
    if len(x) == 0:
        return float("nan"), float("nan"), float("nan")
    idx = np.random.default_rng(seed).integers(0, len(x), size=(iters, len(x)))
    boots = x[idx].mean(axis=1)
    a = (1 - level) / 2
    return float(x.mean()), float(np.quantile(boots, a)), float(np.quantile(boots, 1 - a))


def perplexity_ci(nll_sums: list[float], counts: list[int], iters: int = ITERS, seed: int = 0,
                  level: float = 0.95) -> tuple[float, float, float]:
    """Token-level perplexity exp(sum NLL / sum tokens), bootstrapped over documents."""
    s, n = np.asarray(nll_sums, dtype=float), np.asarray(counts, dtype=float)
    idx = np.random.default_rng(seed).integers(0, len(s), size=(iters, len(s)))
    boots = np.exp(s[idx].sum(axis=1) / n[idx].sum(axis=1))
    a = (1 - level) / 2
    return float(np.exp(s.sum() / n.sum())), float(np.quantile(boots, a)), float(np.quantile(boots, 1 - a))
