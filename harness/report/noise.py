"""Verdicts that survive a re-run: training noise in every interval, and corrections for looking at many.

The training run is the unit. A difference between two trained configurations is the difference of their
means over seeds, and its standard error adds each side's seed term to the item term:

    SE² = s̃²_A / S_A + s̃²_B / S_B + SE²_items

`SE_items` comes from the paired bootstrap on seed-averaged items (harness.report.deltas). `s̃²` is the
*moderated* seed variance of one strategy and metric: the run's own variance over its S seeds (S − 1
degrees of freedom) pooled with a prior variance s0² measured by a reference run of the same matrix family
with more seeds (d0 = that run's seeds − 1), an empirical-Bayes estimate in the manner of Smyth (2004):

    s̃² = (d0·s0² + (S − 1)·s²) / (d0 + S − 1)   with d0 + S − 1 degrees of freedom.

Two or three seeds alone give 1-2 degrees of freedom, too few for an interval that covers; strategies are
never pooled with each other (their training noise differs ~50x). With one seed the prior is the whole seed
term; with one seed and no prior there is none, and every surface says training noise is not measured.
The interval is Δ ± t·SE with Satterthwaite's degrees of freedom, and p comes from the same t.

    term = seed_term([0.81, 0.86], Prior(0.0009, 5))          # SeedTerm(var=..., df=6, seeds=2, ...)
    iv = t_interval(delta=0.05, item_se=0.02, item_df=23, terms=[term_a, term_b])
    holm([0.01, 0.04, 0.03]), benjamini_hochberg([...])        # adjusted p-values, input order
    detectable_difference(item_sd=0.4, items=24, seed_var=0.001, seeds=2)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

LEVEL = 0.95
POWER = 0.8


@dataclass(frozen=True)
class Prior:
    """A strategy's seed variance of one metric from a reference run: `var` on `df` = its seeds − 1."""

    var: float
    df: float
    source: str = ""  # where it was measured, e.g. "results/smoke-noise (6 seeds)"


@dataclass(frozen=True)
class SeedTerm:
    """One configuration's training noise: the variance of one seed's value, its df, and how many seeds."""

    var: float
    df: float
    seeds: int
    source: str  # "own" (the run's seeds alone), "moderated" (pooled with a prior) or "prior" (one seed)

    @property
    def of_mean(self) -> float:
        """The variance of the configuration's mean over its seeds."""
        return self.var / self.seeds


def seed_term(values: list[float], prior: Prior | None = None) -> SeedTerm | None:
    """The moderated seed variance of one configuration's per-seed values; None: not measured (one seed, no
    prior). Without a prior, two or more seeds give their own variance on S − 1 df (a wide t)."""
    values = [v for v in values if v is not None and math.isfinite(v)]
    s, own = len(values), float(np.var(values, ddof=1)) if len(values) > 1 else 0.0
    if not s or (s == 1 and prior is None):
        return None
    if prior is None:
        return SeedTerm(own, s - 1, s, "own")
    df = prior.df + s - 1
    return SeedTerm((prior.df * prior.var + (s - 1) * own) / df, df, s, "moderated" if s > 1 else "prior")


def satterthwaite(parts: list[tuple[float, float]]) -> float:
    """Welch-Satterthwaite degrees of freedom of a sum of independent variance estimates (variance, its df)."""
    total = sum(v for v, _ in parts)
    denom = sum(v * v / d for v, d in parts if d > 0 and math.isfinite(d))
    return math.inf if denom == 0 else total * total / denom


def t_interval(delta: float, item_se: float, item_df: float, terms: list[SeedTerm | None],
               level: float = LEVEL) -> dict:
    """Δ ± t·SE over the item term and each side's seed term; p-value from the same t (two-sided)."""
    parts = [(item_se * item_se, item_df)] + [(t.of_mean, t.df) for t in terms if t is not None]
    se = math.sqrt(sum(v for v, _ in parts))
    df = satterthwaite(parts)
    if se == 0:
        return {"delta": delta, "lo": delta, "hi": delta, "se": 0.0, "df": df, "p": 1.0 if delta == 0 else 0.0}
    q = float(sps.t.ppf(0.5 + level / 2, df)) if math.isfinite(df) else float(sps.norm.ppf(0.5 + level / 2))
    p = float(2 * sps.t.sf(abs(delta) / se, df)) if math.isfinite(df) else float(2 * sps.norm.sf(abs(delta) / se))
    return {"delta": delta, "lo": delta - q * se, "hi": delta + q * se, "se": se, "df": df, "p": p}


def holm(pvalues: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error), in the input order."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    out, running = [0.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        out[i] = running
    return out


def benjamini_hochberg(pvalues: list[float]) -> list[float]:
    """Benjamini-Hochberg adjusted p-values (false discovery rate), in the input order."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i], reverse=True)
    out, running = [0.0] * m, 1.0
    for k, i in enumerate(order):
        running = min(running, pvalues[i] * m / (m - k))
        out[i] = running
    return out


def detectable_difference(item_sd: float, items: int, seed_var: float | None = None, seeds: int = 1,
                          prior_df: float | None = None, alpha: float = 1 - LEVEL, power: float = POWER,
                          per_unit: float | None = None) -> float:
    """The smallest true difference between two configurations (each with `seeds` seeds, scored on the same
    `items`) that a two-sided test at `alpha` detects with `power`: (t_{1-α/2} + t_{power}) · SE, where
    SE² = item_sd² / items + 2 · seed_var / seeds. `item_sd`: the sd of per-item paired differences;
    `seed_var`: one seed's variance (None: left out); df by Satterthwaite.

    `per_unit` (a 0-1 score: the items averaged into each unit, 1 for items, 4 for groups of 4): a difference δ
    is made of items that flipped, whose variance δ(1 − δ) / per_unit adds to item_sd² (measured where nothing
    differed). Near 0 or 1 that variance is most of the test's, and leaving it out would promise a difference
    the test cannot see; δ is then the fixed point of the formula."""
    def mdd(delta: float) -> float:
        flips = delta * (1 - delta) / per_unit if per_unit else 0.0
        parts = [((item_sd * item_sd + flips) / items, items - 1)]
        if seed_var:
            df = (prior_df or 0) + seeds - 1
            parts += [(seed_var / seeds, df if df > 0 else math.inf)] * 2
        se = math.sqrt(sum(v for v, _ in parts))
        df = satterthwaite(parts)
        dist = sps.t(df) if math.isfinite(df) else sps.norm()
        return float((dist.ppf(1 - alpha / 2) + dist.ppf(power)) * se)

    delta = mdd(0.0)
    for _ in range(100 if per_unit else 0):  # increasing and concave below 1/2: converges from below
        delta, last = min(mdd(delta), 1.0), delta
        if abs(delta - last) < 1e-9:
            break
    return delta


def needed(target: float, item_sd: float, items: int, seed_var: float | None = None, seeds: int = 1,
           prior_df: float | None = None, most: int = 10**6, per_unit: float | None = None) -> dict:
    """The fewest items (seeds kept) and the fewest seeds (items kept) that make `target` detectable; None: not
    within `most` (seeds: where the item term alone already exceeds it, no number of seeds will do)."""
    def fewest(fn, lo: int) -> int | None:
        if fn(lo) <= target:
            return lo
        hi = lo
        while fn(hi) > target:
            lo, hi = hi, hi * 2
            if hi > most:
                return None
        while hi - lo > 1:  # fn falls as n grows: the first n at or under the target
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if fn(mid) > target else (lo, mid)
        return hi
    grow_items = fewest(lambda n: detectable_difference(item_sd, n, seed_var, seeds, prior_df, per_unit=per_unit),
                        max(2, items))
    grow_seeds = (fewest(lambda s: detectable_difference(item_sd, items, seed_var, s, prior_df, per_unit=per_unit),
                         max(1, seeds))
                  if seed_var else None)
    return {"items": grow_items, "seeds": grow_seeds}
