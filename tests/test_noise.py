"""Seed-aware intervals cover, the corrections adjust as Holm and Benjamini-Hochberg do, and the detectable
difference is what a simulation detects 80% of the time."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.evals import stats
from harness.report.noise import (
    Prior,
    benjamini_hochberg,
    detectable_difference,
    holm,
    needed,
    seed_term,
    t_interval,
)

Z = 1.959964
ITEMS, REF_SEEDS = 48, 6
SW, SE = 0.5, 0.1  # sd of a configuration x item effect; residual sd of one seed's item score


def _run(rng, seeds: int, seed_sd: float, delta: float, k: int) -> dict:
    """Two configurations on the same items (crossed seeds x items), each with a noise prior measured by a
    reference run of REF_SEEDS seeds; the seed-aware interval of b - a, as compare computes it."""
    shared = rng.normal(0, 1, ITEMS)  # item difficulty, common to both sides: what pairing removes
    scores, terms = {}, []
    for side, mu in (("a", 0.0), ("b", delta)):
        item = rng.normal(0, SW, ITEMS)
        scores[side] = np.array([mu + rng.normal(0, seed_sd) + shared + item + rng.normal(0, SE, ITEMS)
                                 for _ in range(seeds)])
        reference = rng.normal(0, seed_sd, REF_SEEDS) + rng.normal(0, SE / math.sqrt(ITEMS), REF_SEEDS)
        terms.append(seed_term(scores[side].mean(axis=1).tolist(), Prior(float(np.var(reference, ddof=1)),
                                                                          REF_SEEDS - 1)))
    a, b = scores["a"].mean(axis=0), scores["b"].mean(axis=0)  # seed-averaged items, bootstrapped as today
    d, lo, hi = stats.paired_diff_ci(a.tolist(), b.tolist(), seed=k)
    return t_interval(d, (hi - lo) / (2 * Z), ITEMS - 1, terms)


@pytest.mark.parametrize("seeds", [2, 3])
@pytest.mark.parametrize("ratio", [0.1, 1.0, 10.0])  # seed term / item term of the difference's variance
def test_seed_aware_intervals_cover_95_percent(seeds, ratio):
    rng = np.random.default_rng(seeds * 100 + int(ratio * 10))
    seed_sd = math.sqrt(ratio * (2 * SW**2 / ITEMS) * seeds / 2)
    covered = 0
    for k in range(1000):
        iv = _run(rng, seeds, seed_sd, 0.1, k)
        covered += iv["lo"] <= 0.1 <= iv["hi"]
    assert 0.92 <= covered / 1000 <= 0.97


def test_without_a_prior_one_seed_has_no_seed_term_and_seeds_alone_use_their_own_variance():
    assert seed_term([0.8]) is None
    own = seed_term([0.8, 0.9])
    assert (own.source, own.df, own.seeds) == ("own", 1, 2) and own.var == pytest.approx(0.005)
    prior = seed_term([0.8], Prior(0.002, 5))
    assert (prior.source, prior.var, prior.df, prior.of_mean) == ("prior", 0.002, 5, 0.002)
    moderated = seed_term([0.8, 0.9], Prior(0.002, 5))  # (5 * 0.002 + 1 * 0.005) / 6
    assert moderated.source == "moderated" and moderated.var == pytest.approx(0.0025) and moderated.df == 6


def test_holm_and_benjamini_hochberg_on_planted_p_values():
    p = [0.01, 0.04, 0.03, 0.005, 0.5]
    # Holm: sorted 0.005 x5, 0.01 x4, 0.03 x3, 0.04 x2, 0.5 x1, made monotone
    assert holm(p) == pytest.approx([0.04, 0.09, 0.09, 0.025, 0.5])
    # BH: sorted descending 0.5 x5/5, 0.04 x5/4, 0.03 x5/3, 0.01 x5/2, 0.005 x5/1, made monotone from the top
    assert benjamini_hochberg(p) == pytest.approx([0.025, 0.05, 0.05, 0.025, 0.5])
    planted = [1e-4] * 3 + list(np.linspace(0.2, 0.9, 17))  # 3 real effects among 20 comparisons
    assert sum(q < 0.05 for q in holm(planted)) == 3 and sum(q < 0.05 for q in benjamini_hochberg(planted)) == 3
    naive = [0.03] + [0.6] * 19  # one p under 0.05 among 20 is what chance gives: neither correction keeps it
    assert holm(naive)[0] > 0.05 and benjamini_hochberg(naive)[0] > 0.05


@pytest.mark.parametrize("seeds,seed_sd", [(2, 0.0), (2, 0.08), (3, 0.15)])
def test_the_detectable_difference_is_detected_80_percent_of_the_time(seeds, seed_sd):
    item_sd = math.sqrt(2 * SW**2 + 2 * SE**2 / seeds)  # sd of a seed-averaged per-item paired difference
    seed_var = seed_sd**2 + SE**2 / ITEMS
    mdd = detectable_difference(item_sd, ITEMS, seed_var if seed_sd else None, seeds, REF_SEEDS - 1)
    rng = np.random.default_rng(seeds)
    detected = 0
    for k in range(1000):
        iv = _run(rng, seeds, seed_sd, mdd, k)
        detected += iv["lo"] > 0 or iv["hi"] < 0
    assert 0.75 <= detected / 1000 <= 0.86, (mdd, detected)
    var = seed_var if seed_sd else None
    target = 0.75 * mdd
    more = needed(target, item_sd, ITEMS, var, seeds, REF_SEEDS - 1)
    for key, grown in (("items", lambda n: detectable_difference(item_sd, n, var, seeds, REF_SEEDS - 1)),
                       ("seeds", lambda n: detectable_difference(item_sd, ITEMS, var, n, REF_SEEDS - 1))):
        if more[key] is not None:  # the fewest that halve it: one fewer does not
            assert grown(more[key]) <= target < grown(more[key] - 1)
        elif var is not None:  # the other term alone keeps it above the target, however many items or seeds
            assert grown(10**6) > target
    assert more["items"] is not None or more["seeds"] is not None


def test_a_0_1_score_near_its_ceiling_is_detected_at_the_difference_that_counts_its_flips():
    groups, size, p, churn = 24, 4, 0.95, 0.03  # 24 people x 4 paraphrases, 95% right, 3% of items re-drawn
    unit = np.repeat(np.arange(groups), size)
    rng = np.random.default_rng(7)

    def pair(delta: float):  # b loses delta of the items on average: each right item flips with delta / p
        a = (rng.random(groups * size) < p).astype(float)
        b = np.where(rng.random(a.size) < churn, (rng.random(a.size) < p).astype(float), a)
        return a, np.where(rng.random(a.size) < delta / p, 0.0, b)

    null = [np.bincount(unit, b - a) / size for a, b in (pair(0.0) for _ in range(2000))]
    sd = float(np.std(np.concatenate(null), ddof=1))  # the sd of a group's paired difference where none differ
    naive, mdd = detectable_difference(sd, groups), detectable_difference(sd, groups, per_unit=size)
    assert mdd > 2 * naive  # near 1, the flips that make a difference are most of the variance
    rate = []
    for delta in (naive, mdd):
        hits = 0
        for k in range(400):
            a, b = pair(delta)
            d, lo, hi = stats.paired_diff_ci(a.tolist(), b.tolist(), groups=unit.tolist(), seed=k)
            iv = t_interval(d, (hi - lo) / (2 * Z), groups - 1, [])
            hits += iv["hi"] < 0
        rate.append(hits / 400)
    assert rate[0] < 0.6 and 0.72 <= rate[1] <= 0.92, (naive, mdd, rate)
