"""Intervals against known values and simulated populations; item ids that pair the right items."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.evals import stats
from harness.evals.items import PairingError, align, item_ids

Z = 1.959963984540054  # the 97.5% normal quantile
SIMS = 1000


def test_wilson_interval_equals_the_hand_computed_formula_and_keeps_a_width_at_0_and_1():
    # 8 of 10: centre (0.8 + Z²/20) / (1 + Z²/10) = 0.99207 / 1.38415 = 0.71674; half-width
    # Z / (1 + Z²/10) * sqrt(0.8 * 0.2 / 10 + Z²/400) = 1.41600 * 0.16000 = 0.22656 -> [0.4902, 0.9433]
    centre = (0.8 + Z * Z / 20) / (1 + Z * Z / 10)
    half = Z / (1 + Z * Z / 10) * math.sqrt(0.016 + Z * Z / 400)
    p, lo, hi = stats.wilson_ci([1] * 8 + [0] * 2)
    assert p == 0.8 and lo == pytest.approx(centre - half) and hi == pytest.approx(centre + half)
    assert (round(lo, 4), round(hi, 4)) == (0.4902, 0.9433)  # the textbook value for 8/10
    # 96 of 96: the lower bound is n / (n + Z²) = 96 / 99.8415 = 0.96152; a percentile bootstrap gives [1, 1]
    assert stats.wilson_ci([1.0] * 96) == (1.0, pytest.approx(96 / (96 + Z * Z)), 1.0)
    assert stats.wilson_ci([0.0] * 48) == (0.0, 0.0, pytest.approx(Z * Z / (48 + Z * Z)))  # 0.0741, not 0
    assert stats.mean_ci([1.0] * 96) == (1.0, 1.0, 1.0)  # why proportions do not use it


def test_design_effect_by_hand_and_clustered_wilson_at_the_ends():
    # two groups of two that agree inside: p = 0.5, group sums y = (2, 0), sizes m = (2, 2);
    # clustered variance 2/1 * ((2-1)² + (0-1)²) / 4² = 0.25, binomial 0.25/4 = 0.0625 -> deff 4
    assert stats.design_effect([1, 1, 0, 0], ["a", "a", "b", "b"]) == pytest.approx(4.0)
    # groups that each hold one 1 and one 0: y = (1, 1) -> clustered variance 0, deff floored at 1
    assert stats.design_effect([1, 0, 1, 0], ["a", "a", "b", "b"]) == 1.0
    # all correct, 24 people x 4 paraphrases: the worst case, deff = 24 * 4² / 96 = 4, so 24 people count; the
    # t correction for 24 groups, (Z / t_{0.975,23})² = (1.95996 / 2.06866)² = 0.89768, leaves n_eff = 21.544
    people = [f"p{i // 4}" for i in range(96)]
    assert stats.design_effect([1.0] * 96, people) == pytest.approx(4.0)
    p, lo, hi = stats.wilson_ci([1.0] * 96, groups=people)
    n_eff = 24 * (Z / 2.068657610419) ** 2
    assert (p, hi) == (1.0, 1.0) and lo == pytest.approx(n_eff / (n_eff + Z * Z))  # 0.8487, not 0.9615
    assert stats.interval([1.0] * 96, people) == {"value": 1.0, "ci_low": lo, "ci_high": 1.0, "n": 96,
                                                  "ci_method": "wilson-clustered", "groups": 24}
    assert stats.interval([0.5, 1.0])["ci_method"] == "bootstrap"
    with pytest.raises(ValueError, match="one group per item: 3 groups for 2 items"):
        stats.mean_ci([1.0, 2.0], groups=["a", "b", "c"])


def test_bootstrap_of_two_documents_spans_the_resamples_exactly():
    # Two documents, NLL 10 and 20 over 5 tokens each: a resample is doc 1 twice (e²), both (e³) or doc 2
    # twice (e⁴). With k = 2 units the expanded percentile levels are Φ(-sqrt(2) t_{0.975,1}) ≈ 0, so the
    # interval is the smallest and largest resample.
    ppl, lo, hi = stats.perplexity_ci([10.0, 20.0], [5, 5])
    assert (ppl, lo, hi) == (pytest.approx(math.exp(3)), pytest.approx(math.exp(2)), pytest.approx(math.exp(4)))


def test_bootstrap_half_width_is_the_normal_approximation_on_a_large_sample():
    # 0..399: mean 199.5, sd sqrt((n²-1)/12) = 115.47, se 5.774; the expanded percentile interval
    # should be 1.97 * sqrt(400/399) * 5.774 = 11.39 either side, up to Monte-Carlo error
    x = np.arange(400.0)
    mean, lo, hi = stats.mean_ci(x)
    assert mean == 199.5 and (hi - lo) / 2 == pytest.approx(11.39, rel=0.08) and lo < mean < hi


def _coverage(draw, method) -> float:
    rng = np.random.default_rng(2024)
    hits = 0
    for s in range(SIMS):
        values, groups, truth = draw(rng)
        _, lo, hi = method(values, groups, s)
        hits += lo <= truth <= hi
    return hits / SIMS


def _clustered(rng, people=30, paraphrases=4):
    """A person effect shared by their paraphrases (intra-class correlation 0.5), true mean 0.5."""
    shared = rng.normal(0, 1, people)[:, None]
    values = (0.5 + shared + rng.normal(0, 1, (people, paraphrases))).ravel()
    return values, np.repeat(np.arange(people), paraphrases), 0.5


def test_bootstrap_intervals_cover_the_true_mean_95_percent_of_the_time():
    item = _coverage(lambda r: (r.exponential(1.0, 100), None, 1.0),  # skewed, as per-item scores often are
                     lambda v, g, s: stats.mean_ci(v, seed=s))
    cluster = _coverage(_clustered, lambda v, g, s: stats.mean_ci(v, seed=s, groups=g))
    naive = _coverage(_clustered, lambda v, g, s: stats.mean_ci(v, seed=s))  # the same data, groups ignored
    assert 0.93 <= item <= 0.97 and 0.93 <= cluster <= 0.97
    assert naive < 0.88  # what resampling paraphrases as if independent does: far too narrow


def test_wilson_intervals_cover_the_true_rate_plain_and_clustered():
    def binary(rng):
        return (rng.random(96) < 0.9).astype(float), None, 0.9

    def clustered(rng, people=24, a=3.6, b=0.4):  # each person's own rate ~ Beta(a, b), 4 paraphrases each
        rate = rng.beta(a, b, people)[:, None]
        return (rng.random((people, 4)) < rate).astype(float).ravel(), np.repeat(np.arange(people), 4), a / (a + b)

    plain = _coverage(binary, lambda v, g, s: stats.wilson_ci(v))
    grouped = _coverage(clustered, lambda v, g, s: stats.wilson_ci(v, groups=g))  # near 1, like task EM
    middle = _coverage(lambda r: clustered(r, 40, 2.5, 2.5), lambda v, g, s: stats.wilson_ci(v, groups=g))
    ignored = _coverage(clustered, lambda v, g, s: stats.wilson_ci(v))
    assert 0.93 <= plain <= 0.97 and 0.93 <= grouped <= 0.97 and 0.93 <= middle <= 0.97
    assert ignored < 0.91  # the plain interval on the same paraphrases


def test_corpus_delta_re_scores_both_sides_as_corpora():
    from harness.evals.generation import bleu

    refs = [["the cat sat on the mat"]] * 2
    # base: "the cat sat on a mat" (precisions 5/6, 3/5, 2/4, 1/3; BLEU (1/12)^(1/4) = 53.73) and "the cat sat
    # on" (all precisions 1, brevity penalty e^(1-6/4): 60.65). As a corpus: precisions 9/10, 6/8, 4/6, 2/4,
    # lengths 10 vs 12: (0.9 * 0.75 * 0.6667 * 0.5)^(1/4) * e^(1-12/10) = 0.68874 * 0.81873 = 56.39.
    base = bleu(["the cat sat on a mat", "the cat sat on"], refs)
    best = bleu(["the cat sat on the mat"] * 2, refs)  # BLEU 100
    assert base.per_item == pytest.approx([53.73, 60.65], abs=0.01)
    assert base.score(np.sum(base.stats, axis=0)) == pytest.approx(56.39, abs=0.01)
    delta, lo, hi = stats.paired_corpus_diff_ci(base.stats, best.stats, base.score)
    assert delta == pytest.approx(100 - 56.39, abs=0.01)  # not 100 - mean(53.73, 60.65) = 42.81
    assert lo == pytest.approx(100 - 60.65, abs=0.01) and hi == pytest.approx(100 - 53.73, abs=0.01)


def test_item_ids_hash_content_not_position_and_stay_unique():
    ids = item_ids([("prompt a", "ref a"), ("prompt b", "ref b"), ("prompt a", "ref a")])
    assert ids[0] != ids[1] and ids[2] == ids[0] + "~2" and len(ids[0]) == 16
    assert item_ids([("prompt b", "ref b")]) == [ids[1]]  # the same item has the same id wherever it sits


def test_align_joins_on_ids_and_says_what_it_did():
    a, b = ["x", "y", "z"], ["z", "x", "y"]
    p = align(a, b, 3, 3)
    assert [b[i] for i in p.b] == [a[i] for i in p.a] == a and p.note is None and p.by == "id"
    part = align(["x", "y", "z", "w"], ["y", "x", "v"], 4, 3)
    assert part.n == 2
    assert part.note == "paired the 2 items both sides scored (2 only in the first, 1 only in the second)"
    with pytest.raises(PairingError, match="no item in common"):
        align(["x"], ["y"], 1, 1)
    old = align(None, ["x", "y"], 2, 2)
    assert old.by == "position" and "paired by position" in old.note
    assert align(None, None, 2, 3) is None  # no ids, different counts: nothing to pair
