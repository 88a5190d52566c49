"""Uncertainty for every reported number: intervals that follow how the items were drawn, seeded.

Items may come in groups (the tiny world's task: 4 paraphrases per person; MMLU: questions per
subject). Items of one group are not independent, so where a set declares groups the bootstrap
resamples whole groups (a cluster bootstrap; Miller 2024, "Adding Error Bars to Evals",
arXiv:2411.00640, recommends clustered errors for exactly this case). Methods, by kind of score:

- a proportion (every item scores 0 or 1): the Wilson score interval, which keeps a width at 0 and 1
  where a percentile bootstrap collapses to a point. With groups: Wilson at the effective sample
  size n / deff, deff = max(1, the clustered variance / the binomial variance), times Korn &
  Graubard's (1998) degrees-of-freedom factor (z / t_{G-1})^2 for G groups, the survey-statistics
  adjustment for clustered proportions. At 0 or 1 the data cannot show how strongly groups agree,
  so the worst case is taken (every group counts once: deff = sum of squared group sizes / n).
- any other mean, perplexity (token-weighted), bits per byte (byte-weighted) and corpus metrics (BLEU, chrF
  re-scored from summed statistics): a percentile bootstrap over items, or over groups where they exist.
- paired differences: the same resampling applied to both cells at once.

`METHODS` holds the one-line description the leaderboard prints for each method.

    value, lo, hi = mean_ci([0.2, 0.9, 0.4])                              # bootstrap over items
    value, lo, hi = wilson_ci([1, 1, 1, 1], groups=["a", "a", "b", "b"])   # no collapse at 1
    iv = interval([1, 0, 1], groups=None)                                 # {"value", "ci_low", ..., "ci_method"}
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

ITERS = 1000

METHODS = {
    "wilson": "Wilson score interval (a proportion: every item scores 0 or 1)",
    "wilson-clustered": "Wilson score interval at the effective sample size of grouped items (n / design effect, "
                        "Korn-Graubard t correction; at 0 or 1, the worst case: each group counts once)",
    "bootstrap": f"percentile bootstrap over items ({ITERS:,} resamples)",
    "cluster-bootstrap": f"percentile bootstrap over groups ({ITERS:,} resamples of whole groups)",
    "paired-bootstrap": "paired bootstrap: the same items resampled for both cells",
    "paired-cluster-bootstrap": "paired cluster bootstrap: the same groups resampled for both cells",
    "unpaired": "no shared items: the two intervals' half-widths added in quadrature (normal approximation)",
}


def _units(n: int, groups: Sequence | None) -> tuple[np.ndarray, int]:
    """Each item's resampling unit (its group, or itself) as an index, and the number of units."""
    if groups is None:
        return np.arange(n), n
    if len(groups) != n:
        raise ValueError(f"groups must name one group per item: {len(groups)} groups for {n} items")
    _, unit = np.unique(np.asarray([str(g) for g in groups]), return_inverse=True)
    return unit, int(unit.max()) + 1 if n else 0


def _sums(values: np.ndarray, unit: np.ndarray, k: int) -> np.ndarray:
    """Per-unit sums of `values` (items along axis 0; a trailing axis of statistics is kept)."""
    out = np.zeros((k,) + values.shape[1:])
    np.add.at(out, unit, values)
    return out


def _draws(k: int, iters: int, seed: int) -> np.ndarray:
    """(iters, k): how often each unit is drawn in each resample of k units with replacement."""
    idx = np.random.default_rng(seed).integers(0, k, size=(iters, k))
    return np.bincount((np.arange(iters)[:, None] * k + idx).ravel(), minlength=iters * k).reshape(iters, k)


def _percentiles(boots: np.ndarray, level: float, k: int) -> tuple[float, float]:
    """The expanded percentile interval (Hesterberg 2015): the plain percentile interval of k resampled units
    is too narrow by about sqrt((k-1)/k) and a z for a t; its tail levels are moved out to make up for both."""
    a = (1 - level) / 2
    if k > 1:
        from scipy.stats import t

        a = NormalDist().cdf(-np.sqrt(k / (k - 1)) * t.ppf(1 - a, k - 1))
    return float(np.quantile(boots, a)), float(np.quantile(boots, 1 - a))


def mean_ci(values: list[float], iters: int = ITERS, seed: int = 0, level: float = 0.95,
            groups: Sequence | None = None) -> tuple[float, float, float]:
    """Mean and percentile bootstrap interval; with `groups`, whole groups are resampled (item-weighted mean)."""
    x = np.asarray(values, dtype=float)
    if len(x) == 0:
        return float("nan"), float("nan"), float("nan")
    unit, k = _units(len(x), groups)
    w = _draws(k, iters, seed)
    boots = w @ _sums(x, unit, k) / (w @ _sums(np.ones_like(x), unit, k))
    return (float(x.mean()), *_percentiles(boots, level, k))


def is_proportion(values) -> bool:
    """Every per-item score is 0 or 1: a rate, whose interval should not collapse at the ends."""
    x = np.asarray(values, dtype=float)
    return len(x) > 0 and bool(np.isin(x, (0.0, 1.0)).all())


def design_effect(values, groups: Sequence) -> float:
    """Variance of the mean under clustering over its binomial variance, at least 1.

    The clustered variance is the ratio-estimator (linearisation) variance over groups,
    G/(G-1) * sum_g (y_g - p m_g)^2 / n^2. Where every item scores the same it is 0/0; the
    worst case then stands in (all items of a group agree): sum of squared group sizes / n.
    """
    x = np.asarray(values, dtype=float)
    n = len(x)
    unit, k = _units(n, groups)
    y, m = _sums(x, unit, k), _sums(np.ones(n), unit, k)
    p = x.mean()
    if p in (0.0, 1.0) or k < 2:
        return float((m ** 2).sum() / n)
    clustered = k / (k - 1) * ((y - p * m) ** 2).sum() / n ** 2
    return max(1.0, float(clustered / (p * (1 - p) / n)))


def wilson_ci(values, level: float = 0.95, groups: Sequence | None = None) -> tuple[float, float, float]:
    """Proportion and its Wilson score interval; with `groups`, at the effective sample size.

    n_eff = n / deff * (z / t_{G-1})^2: the design effect, and Korn & Graubard's degrees-of-freedom
    factor, since the clustered variance is estimated from only G groups.
    """
    x = np.asarray(values, dtype=float)
    if len(x) == 0:
        return float("nan"), float("nan"), float("nan")
    p = float(x.mean())
    z = NormalDist().inv_cdf(1 - (1 - level) / 2)
    n = float(len(x))
    if groups is not None:
        from scipy.stats import t

        k = len(set(map(str, groups)))
        n = n / design_effect(x, groups) * (z / t.ppf(1 - (1 - level) / 2, k - 1)) ** 2 if k > 1 else 1.0
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    # the bounds hold p exactly: at p = 0 or 1, rounding would leave centre - half a hair off it
    return p, max(0.0, min(p, float(centre - half))), min(1.0, max(p, float(centre + half)))


LN2 = float(np.log(2))


class BitsPerByte(tuple):
    """A bits-per-byte metric's per-document scores: (NLL sums in nats, UTF-8 byte counts), stored like perplexity's
    [nll_sums, token_counts]; reported as sum NLL / (ln 2 * sum bytes), which does not depend on the tokenizer."""

    def __new__(cls, nll_sums, byte_counts):
        return super().__new__(cls, (list(nll_sums), list(byte_counts)))


def _bits(rate):
    return rate / LN2


def _rate_ci(sums, counts, transform, iters: int, seed: int, level: float,
             groups: Sequence | None) -> tuple[float, float, float]:
    """transform(sum / count) over all documents, bootstrapped over documents (or groups of them)."""
    s, n = np.asarray(sums, dtype=float), np.asarray(counts, dtype=float)
    unit, k = _units(len(s), groups)
    w = _draws(k, iters, seed)
    boots = transform(w @ _sums(s, unit, k) / (w @ _sums(n, unit, k)))
    return (float(transform(s.sum() / n.sum())), *_percentiles(boots, level, k))


def perplexity_ci(nll_sums: list[float], counts: list[int], iters: int = ITERS, seed: int = 0,
                  level: float = 0.95, groups: Sequence | None = None) -> tuple[float, float, float]:
    """Token-level perplexity exp(sum NLL / sum tokens), bootstrapped over documents (or groups of them)."""
    return _rate_ci(nll_sums, counts, np.exp, iters, seed, level, groups)


def bpb_ci(nll_sums: list[float], byte_counts: list[int], iters: int = ITERS, seed: int = 0,
           level: float = 0.95, groups: Sequence | None = None) -> tuple[float, float, float]:
    """Bits per byte sum NLL / (ln 2 * sum bytes), bootstrapped over documents (or groups) like perplexity."""
    return _rate_ci(nll_sums, byte_counts, _bits, iters, seed, level, groups)


def paired_diff_ci(a: list[float], b: list[float], iters: int = ITERS, seed: int = 0,
                   level: float = 0.95, groups: Sequence | None = None) -> tuple[float, float, float]:
    """mean(b - a) over the same items (aligned by the caller), items (or groups) resampled together.

    Pairing removes the item-difficulty variance both sides share, so a real 2-point change on
    a few hundred items shows up where two independent intervals would overlap.
    """
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape:
        raise ValueError(f"paired scores need the same items: {len(x)} vs {len(y)}")
    return mean_ci(list(y - x), iters, seed, level, groups)


def paired_ppl_diff_ci(a: tuple[list[float], list[int]], b: tuple[list[float], list[int]], iters: int = ITERS,
                       seed: int = 0, level: float = 0.95, groups: Sequence | None = None
                       ) -> tuple[float, float, float]:
    """Perplexity of b minus perplexity of a on the same documents, documents (or groups) resampled together."""
    (sa, na), (sb, nb) = (tuple(np.asarray(v, dtype=float) for v in side) for side in (a, b))
    if sa.shape != sb.shape or not np.array_equal(na, nb):
        raise ValueError("paired perplexities need the same documents and token counts")
    unit, k = _units(len(sa), groups)
    w = _draws(k, iters, seed)
    n = w @ _sums(na, unit, k)
    boots = np.exp(w @ _sums(sb, unit, k) / n) - np.exp(w @ _sums(sa, unit, k) / n)
    point = float(np.exp(sb.sum() / na.sum()) - np.exp(sa.sum() / na.sum()))
    return (point, *_percentiles(boots, level, k))


def paired_bpb_diff_ci(a: tuple[list[float], list[int]], b: tuple[list[float], list[int]], iters: int = ITERS,
                       seed: int = 0, level: float = 0.95, groups: Sequence | None = None
                       ) -> tuple[float, float, float]:
    """Bits per byte of b minus that of a on the same documents, documents (or groups) resampled together.

    Each side divides by its own byte counts: equal for the same documents whatever the tokenizers, but a
    completion cut at a token boundary (max_length) keeps other bytes under another tokenizer."""
    (sa, na), (sb, nb) = (tuple(np.asarray(v, dtype=float) for v in side) for side in (a, b))
    if sa.shape != sb.shape or na.shape != nb.shape or sa.shape != na.shape:
        raise ValueError("paired bits per byte need the same documents")
    unit, k = _units(len(sa), groups)
    w = _draws(k, iters, seed)
    boots = (w @ _sums(sb, unit, k) / (w @ _sums(nb, unit, k)) - w @ _sums(sa, unit, k) / (w @ _sums(na, unit, k)))
    point = float(sb.sum() / nb.sum() - sa.sum() / na.sum()) / LN2
    return (point, *_percentiles(boots / LN2, level, k))


@dataclass(frozen=True)
class CorpusScores:
    """A corpus-level metric (BLEU, chrF): per-item sufficient statistics are summed, then scored.

    `per_item` holds a sentence-level score per item (kept for item-by-item comparison);
    the reported value is `score(sum of stats)`, the library's own corpus number.
    """

    per_item: list[float]
    stats: list[list[float]]
    score: Callable[[np.ndarray], float]


def _corpus_boots(s: np.ndarray, score: Callable, unit: np.ndarray, k: int, iters: int, seed: int) -> np.ndarray:
    summed = _draws(k, iters, seed) @ _sums(s, unit, k)  # (iters, statistics): each resample's corpus totals
    return np.array([score(row) for row in summed])


def corpus_ci(stats: list[list[float]], score: Callable[[np.ndarray], float], iters: int = ITERS, seed: int = 0,
              level: float = 0.95, groups: Sequence | None = None) -> tuple[float, float, float]:
    """Corpus score of all items, with a percentile bootstrap that resamples items (or groups) and re-sums."""
    s = np.asarray(stats, dtype=float)
    if len(s) == 0:
        return float("nan"), float("nan"), float("nan")
    unit, k = _units(len(s), groups)
    return (float(score(s.sum(axis=0))), *_percentiles(_corpus_boots(s, score, unit, k, iters, seed), level, k))


def paired_corpus_diff_ci(a_stats: list[list[float]], b_stats: list[list[float]], score: Callable[[np.ndarray], float],
                          iters: int = ITERS, seed: int = 0, level: float = 0.95, groups: Sequence | None = None
                          ) -> tuple[float, float, float]:
    """Corpus score of b minus that of a on the same items: each resample re-scores both sides as corpora.

    The delta of a corpus metric is a difference of corpus scores, not the mean of per-item
    (sentence-level) differences, which measure something else (the issue-16 audit: +95.6 vs +99.5 BLEU).
    """
    sa, sb = np.asarray(a_stats, dtype=float), np.asarray(b_stats, dtype=float)
    if sa.shape != sb.shape:
        raise ValueError(f"paired corpus scores need the same items: {len(sa)} vs {len(sb)}")
    unit, k = _units(len(sa), groups)
    boots = _corpus_boots(sb, score, unit, k, iters, seed) - _corpus_boots(sa, score, unit, k, iters, seed)
    return (float(score(sb.sum(axis=0)) - score(sa.sum(axis=0))), *_percentiles(boots, level, k))


def interval(scores, groups: Sequence | None = None) -> dict:
    """A metric's reported record from its per-item scores: value, 95% interval, n, the method (and groups).

    `scores` is a list (a mean; Wilson when it is a proportion), BitsPerByte (NLL sums and byte counts),
    a tuple of NLL sums and token counts (perplexity), or CorpusScores.
    """
    boot = "cluster-bootstrap" if groups is not None else "bootstrap"
    if isinstance(scores, BitsPerByte):
        (value, lo, hi), n, method = bpb_ci(*scores, groups=groups), len(scores[0]), boot
    elif isinstance(scores, tuple):
        (value, lo, hi), n, method = perplexity_ci(*scores, groups=groups), len(scores[0]), boot
    elif isinstance(scores, CorpusScores):
        (value, lo, hi), n, method = corpus_ci(scores.stats, scores.score, groups=groups), len(scores.stats), boot
    elif is_proportion(scores):
        (value, lo, hi), n = wilson_ci(scores, groups=groups), len(scores)
        method = "wilson-clustered" if groups is not None else "wilson"
    else:
        (value, lo, hi), n, method = mean_ci(scores, groups=groups), len(scores), boot
    out = {"value": value, "ci_low": lo, "ci_high": hi, "n": n, "ci_method": method}
    if groups is not None:
        out["groups"] = len(set(map(str, groups)))
    return out
