"""Metrics equal their reference implementations, computed from real model outputs."""

from __future__ import annotations

import math

import pytest
import torch

from harness.evals.generation import exact_match, gsm_answer, rouge_l
from harness.evals.lm import continuation_logprobs, encode_pair
from harness.evals.perplexity import text_nll
from harness.evals.stats import mean_ci, perplexity_ci


def test_rouge_l_equals_the_hand_computed_lcs():
    # stemmed: "cats" -> "cat", "sitting" -> "sit" (words of 3 letters or fewer are left as they are).
    # LCS of [the cat sat on the mat] and [a cat was sit on the mat] is "cat on the mat", 4 tokens:
    # P = 4/6, R = 4/7, F = 2PR / (P + R) = 8/13; unstemmed, "cats" would not match: LCS 3, F = 6/13
    assert rouge_l("the cats sat on the mat", "a cat was sitting on the mat") == pytest.approx(8 / 13)
    assert rouge_l("米拉住在卡尔斯克", "米拉住在卡尔斯克") == 1.0  # rouge-score alone gives 0.0 on Chinese
    assert 0 < rouge_l("米拉住在北京", "米拉住在卡尔斯克") < 1


def test_exact_match_and_gsm_extraction():
    assert exact_match("  name: Ada |  city: Rita ", "name: Ada | city: Rita") == 1.0
    assert exact_match("name: Ada", "name: Ida") == 0.0
    assert gsm_answer("3 + 4 = 7.\n#### 7") == "7"
    assert gsm_answer("#### 1,234.") == "1234"
    assert gsm_answer("no answer line") == ""


def test_continuation_logprob_equals_hand_computed_sum(tiny_model):
    model, tok = tiny_model
    ctx, cont = "Question: Where does Ada live?\nAnswer:", " Rita"
    got = continuation_logprobs(model, tok, [(ctx, cont), ("x", " y z")], batch_size=2)[0]
    c, x = encode_pair(tok, ctx, cont)
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([c + x])).logits[0], -1)
    expected = sum(logp[len(c) - 1 + i, t].item() for i, t in enumerate(x))
    assert got == pytest.approx(expected, abs=1e-4)


def test_text_nll_equals_model_loss_and_sliding_window_covers_every_token(tiny_model):
    model, tok = tiny_model
    text = "Ada Tolven lives in Rita. " * 12
    nll, n = text_nll(model, tok, [text], max_length=512)
    ids = torch.tensor([[tok.eos_token_id] + tok(text, add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        loss = model(ids, labels=ids).loss.item()
    assert n[0] == ids.shape[1] - 1
    assert nll[0] / n[0] == pytest.approx(loss, rel=1e-4)
    windowed, n2 = text_nll(model, tok, [text], max_length=32, stride=16)
    assert n2 == n and windowed[0] / n2[0] > 0 and math.isfinite(windowed[0])


def test_bootstrap_interval_of_a_proportion_takes_the_resampled_counts():
    # 6 of 8: a resample's mean is k/8 with k ~ Binomial(8, 0.75). The expanded tail level for 8 items is
    # Φ(-sqrt(8/7) t_{0.975,7}) = 0.0057; P(k <= 2) = 0.0042 < 0.0057 < P(k <= 3) = 0.027 and P(k = 8) = 0.100,
    # so the interval is [3/8, 8/8] (up to Monte-Carlo error in 1,000 resamples)
    mean, lo, hi = mean_ci([1, 0, 1, 1, 0, 1, 1, 1])
    assert (mean, lo, hi) == (0.75, 3 / 8, 1.0)
    ppl, lo, hi = perplexity_ci([10.0, 20.0], [5, 5])  # resamples give e², e³ or e⁴: the extremes span it
    assert (ppl, lo, hi) == (pytest.approx(math.exp(3.0)), pytest.approx(math.exp(2.0)), pytest.approx(math.exp(4.0)))


def test_paired_diff_is_tighter_than_independent_intervals():
    import random

    from harness.evals.stats import mean_ci, paired_diff_ci

    rng = random.Random(0)
    a = [float(rng.random() < 0.6) for _ in range(400)]
    b = [1.0 if x else float(rng.random() < 0.1) for x in a]  # b = a plus some fixed items
    d, lo, hi = paired_diff_ci(a, b)
    assert abs(d - (sum(b) - sum(a)) / 400) < 1e-12 and lo > 0  # a real gain, detected
    _, _, a_hi = mean_ci(a)
    _, b_lo, _ = mean_ci(b)
    assert b_lo < a_hi  # the unpaired intervals overlap and would call it noise
    assert paired_diff_ci(a, a) == (0.0, 0.0, 0.0)


def test_paired_ppl_diff_matches_direct_computation():
    import math

    from harness.evals.stats import paired_ppl_diff_ci

    a, b, n = [10.0, 20.0, 5.0], [12.0, 21.0, 5.5], [10, 10, 5]
    point, lo, hi = paired_ppl_diff_ci((a, n), (b, n))
    assert math.isclose(point, math.exp(38.5 / 25) - math.exp(35 / 25))
    assert lo <= point <= hi and lo > 0
