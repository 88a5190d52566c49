"""Verdicts that survive a re-run: a seed swap is no false alarm, a real regression still fails, takeaways correct
for many comparisons, and the plan says what the matrix can detect."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import yaml
from fake_results import annotated_rows, ppl_items, save_cell

from harness.cli import main
from harness.report import deltas
from harness.report.noise import benjamini_hochberg, detectable_difference, needed
from harness.report.prior import MIN_SEEDS, NOISE_FILE, load_priors
from harness.report.takeaways import Comparisons

N = 300
U = np.random.default_rng(7).random(N)  # each item's difficulty, the same in every folder: the items pair
REF_SHIFTS = [0.05, -0.05, 0.0, 0.07, -0.06, 0.02]  # a reference run's seeds: training noise of sd ~0.05


def _scores(shift: float) -> list[float]:
    """One training run's task scores: the items easier than 0.7 + shift right. A seed's shift moves ~shift x N
    items all one way, so the per-seed difference of two runs has a tight item interval."""
    return (U < 0.7 + shift).astype(float).tolist()


def _folder(d, shifts: list[float], model: str = "m", base: bool = True) -> None:
    if base:
        save_cell(d, "base", "base", {"task_exact_match": (U < 0.2).astype(float).tolist(),
                                      "ppl_general": ppl_items(1.0)}, model=model)
    for seed, shift in enumerate(shifts):
        save_cell(d, f"lora r=4 seed={seed}", "lora", {"task_exact_match": _scores(shift),
                                                        "ppl_general": ppl_items(1.1, seed=1)},
                  seed=seed, params={"r": 4}, model=model, trainable=4096)


@pytest.fixture()
def reference(tmp_path, capsys):
    ref = tmp_path / "ref"
    _folder(ref, REF_SHIFTS)
    assert main(["noise", str(ref)]) == 0
    assert capsys.readouterr().out.strip() == str(ref / NOISE_FILE)
    return ref


def test_noise_writes_the_seed_variance_per_configuration_and_metric(reference):
    doc = json.loads((reference / NOISE_FILE).read_text("utf-8"))
    assert (doc["matrix"], doc["source"], doc["seeds"], doc["seed_list"]) == ("t", str(reference), 6, list(range(6)))
    lora = doc["configurations"]["lora r=4"]
    assert lora["strategy"] == "lora" and lora["params"] == {"r": 4} and lora["seeds"] == list(range(6))
    values = [float(np.mean(_scores(s))) for s in REF_SHIFTS]
    task = lora["metrics"]["task_exact_match"]
    assert task["var"] == pytest.approx(np.var(values, ddof=1)) and (task["df"], task["seeds"]) == (5, 6)
    assert lora["metrics"]["ppl_general"]["scale"] == "log"  # every seed the same documents and scores: 0
    assert lora["metrics"]["ppl_general"]["var"] == pytest.approx(0.0, abs=1e-20)
    assert "base" not in doc["configurations"]  # the untrained base has no training noise
    prior = load_priors(reference).get("lora r=4", "task_exact_match")
    assert prior.df == 5 and prior.source == f"{reference} (6 seeds)"
    assert load_priors(reference / NOISE_FILE).get("lora r=16", "task_exact_match") is None  # never pooled


def test_noise_refuses_a_folder_with_fewer_than_3_seeds(tmp_path, capsys):
    d = tmp_path / "two"
    _folder(d, [0.0, 0.01])
    assert main(["noise", str(d)]) == 2
    err = capsys.readouterr().err
    assert f"at least {MIN_SEEDS} finished seeds per configuration; `lora r=4` has 2" in err
    assert not (d / NOISE_FILE).exists()


def test_a_training_seed_swap_with_a_prior_is_no_false_alarm(tmp_path, reference, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    _folder(a, [0.05, 0.03])
    _folder(b, [-0.04, -0.02], model="m2")  # the same configuration trained again: only the seeds' noise differs
    # today's rule (seed 0 against seed 0, item intervals only) flags it: each seed's difference excludes 0
    for seed, (x, y) in enumerate(zip([0.05, 0.03], [-0.04, -0.02], strict=True)):
        d = deltas.difference({"value": 0, "lo": 0, "hi": 0}, {"value": 0, "lo": 0, "hi": 0}, _scores(x), _scores(y))
        assert d["hi"] < 0, (seed, d)
    assert main(["compare", str(a), str(b), "--noise", str(reference)]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if "task_exact_match" in line and "lora" in line)
    assert "indistinguishable" in row and "a: 2 seed(s), moderated; b: 2 seed(s), moderated" in row
    assert out.rstrip().splitlines()[-1] == (
        "**gate: pass (exit 0)**: Holm over 4 headline comparison(s) (family: task_exact_match, ppl_general); "
        f"seeds 0,1 vs 0,1; training noise: moderated with prior {reference} (6 seeds)")


def test_a_planted_regression_still_fails_with_seeds_and_a_prior(tmp_path, reference, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    _folder(a, [0.05, 0.03])
    _folder(b, [-0.30, -0.28], model="m2")  # a third of the answers lost, far beyond the seeds' spread
    assert main(["compare", str(a), str(b), "--noise", str(reference), "--metrics", "task_exact_match"]) == 1
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if "task_exact_match" in line and "lora" in line)
    assert "regressed" in row
    ppl = next(line for line in out.splitlines() if "ppl_general" in line and "lora" in line)
    assert "not gated" in ppl  # outside the declared family: reported with its interval, never a regression
    assert out.rstrip().splitlines()[-1].startswith(
        "**gate: FAIL (exit 1): 1 regression(s)**: Holm over 2 headline comparison(s) (family: task_exact_match); "
        "seeds 0,1 vs 0,1; training noise: moderated with prior")


def test_one_seed_each_and_no_prior_says_training_noise_is_not_measured(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    _folder(a, [0.0])
    _folder(b, [0.0], model="m2")
    assert main(["compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if "task_exact_match" in line and "lora" in line)
    assert "training noise not measured" in row
    base = next(line for line in out.splitlines() if "task_exact_match" in line and line.startswith("| base"))
    assert "none (base: no training)" in base
    assert "training noise: not measured (one seed per side, no prior" in out.rstrip().splitlines()[-1]


def test_fewer_candidate_seeds_than_the_baseline_finished_fail_closed(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    _folder(a, [0.0, 0.01])
    _folder(b, [0.0], model="m2")
    assert main(["compare", str(a), str(b)]) == 1
    assert "the candidate has 1 seed(s) (0), the baseline finished 2" in capsys.readouterr().out


def _found(p: float) -> dict:
    return {"iv": {"delta": -1.0, "lo": -2.0, "hi": -0.5, "p": p}}


def test_takeaways_correct_planted_p_values_with_benjamini_hochberg():
    planted = [0.01, 0.045, 0.035, 0.005, 0.5]
    tests = Comparisons(None)  # no differences to compute: every comparison's p is planted below
    rows = [{"label": f"r{i}"} for i in range(len(planted) + 1)]
    for i, p in enumerate(planted):
        tests.found[tests._key(rows[0], rows[i + 1], "task_exact_match")] = _found(p)
    tests.correct()
    significant = [tests.significant(rows[0], rows[i + 1], "task_exact_match") for i in range(len(planted))]
    # raw p under 0.05 would call four significant; BH at 5% keeps the two its adjusted p leaves under 0.05
    assert significant == [q < 0.05 for q in benjamini_hochberg(planted)] == [True, False, False, True, False]
    assert "Benjamini-Hochberg at 5% over 5 comparisons" in tests.line()


def test_the_leaderboard_states_the_correction_and_uses_the_folders_prior(tmp_path, reference):
    from harness.report.leaderboard import write_leaderboard

    md = write_leaderboard(reference, plot=False).read_text("utf-8")  # its own noise.json is its prior
    take = md[md.index("## Takeaways"):md.index("## Headline")]
    assert "- Significance: Benjamini-Hochberg at 5% over " in take


def _plan_matrix(tmp_path, noise_from: str | None = None) -> str:
    doc = {"name": "t", "models": "tiny-world", "data": {"path": "zoo:tiny-world/record"}, "budget": {"tokens": 1000},
           "seeds": [0, 1], "strategies": [{"name": "full", "train": {"learning_rate": 3e-4}}],
           "eval": {"suites": ["task"], "limit": 40, "target_effect": 0.05}}
    if noise_from:
        doc["eval"]["noise_from"] = noise_from
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return str(path)


def _power_line(out: str, metric: str) -> str:
    return next(line for line in out.splitlines() if line.strip().startswith(f"task        {metric}:".strip()))


@pytest.mark.parametrize("with_prior", [False, True])
def test_dry_run_and_validate_print_the_detectable_difference(tmp_path, capsys, monkeypatch, with_prior):
    monkeypatch.setenv("HARNESS_HOME", str(tmp_path / "home"))  # no base cache: the item sd is the stated bound
    noise = None
    if with_prior:
        (tmp_path / "ref").mkdir()
        (tmp_path / "ref" / NOISE_FILE).write_text(json.dumps(
            {"source": "ref", "seeds": 6, "configurations": {"full": {"strategy": "full", "params": {}, "metrics": {
                "task_exact_match": {"var": 0.002, "df": 5, "seeds": 6, "scale": "value"}}}}}), encoding="utf-8")
        noise = "ref"
    path = _plan_matrix(tmp_path, noise)
    var, df = (0.002, 5) if with_prior else (None, None)
    mdd = detectable_difference(1.0, 40, var, 2, df)
    more = needed(0.05, 1.0, 40, var, 2, df)
    for argv in (["run", "--matrix", path, "--dry-run"], ["validate", path]):
        assert main(argv) == 0
        out = capsys.readouterr().out
        line = _power_line(out, "task_exact_match")
        assert f"task_exact_match: {mdd:.3g} with 40 items; item sd 1 assumed" in line
        assert ("seed variance 0.002 from ref (6 seeds)" if with_prior else "training noise left out") in line
        target = next(x for x in out.splitlines() if "target effect 0.05" in x)
        assert (f"{more['items'] or 0:,} items (seeds kept)" in target) == bool(more["items"])
        assert (f"{more['seeds']} seeds (items kept)" in target) == bool(more["seeds"])
        assert ("neither more items" in target) == (more["items"] is None and more["seeds"] is None)
    assert math.isfinite(mdd) and mdd > 0.05


def test_a_noise_from_that_holds_no_prior_is_refused(tmp_path, capsys):
    path = _plan_matrix(tmp_path, "nowhere")
    assert main(["validate", path]) == 2
    assert "eval.noise_from:" in capsys.readouterr().err


def test_the_tables_intervals_carry_training_noise_where_the_prior_measures_it(tmp_path, reference):
    from harness.report.leaderboard import write_leaderboard

    for name, second in (("near", 0.03), ("far", 0.3)):  # a second configuration 3 or 30 points above lora r=4
        d = tmp_path / name
        _folder(d, [0.0, 0.01])
        for seed, shift in enumerate([second, second + 0.01]):
            save_cell(d, f"full seed={seed}", "full", {"task_exact_match": _scores(shift),
                                                       "ppl_general": ppl_items(1.1, seed=1)}, seed=seed)
    priors = load_priors(reference)  # lora r=4's seed variance; `full` has no prior: its own two seeds
    near = {r["label"]: r for r in annotated_rows(tmp_path / "near", priors)}
    plain = {r["label"]: r for r in annotated_rows(tmp_path / "near")}
    lora, full = near["lora r=4"], near["full"]
    # 3 points over 300 items moves 9 items all one way: the item term alone excludes 0, training noise does not
    assert lora["vs_base"]["task_exact_match"]["item_only"] is False
    assert lora["near_best"]["task_exact_match"] and full["rank"]["task_exact_match"] == 1
    moderated, own = near["lora r=4"]["vs_base"]["task_exact_match"], plain["lora r=4"]["vs_base"]["task_exact_match"]
    # the run's two seeds happen to agree (shifts 0.00, 0.01); the prior knows seeds spread ~0.05: a wider interval
    assert moderated["hi"] - moderated["lo"] > own["hi"] - own["lo"]
    far = {r["label"]: r for r in annotated_rows(tmp_path / "far", priors)}
    assert not far["lora r=4"]["near_best"]["task_exact_match"]
    md = write_leaderboard(tmp_path / "near", plot=False, noise=reference).read_text("utf-8")
    assert ("- **Training noise:** each trained configuration's variance over its 2 seed(s), moderated with the "
            f"prior `{reference} (6 seeds)`") in md


def test_a_difference_of_shares_never_leaves_minus_one_to_one():
    from harness.report.prior import seed_aware

    d = {"delta": -0.96, "lo": -1.0, "hi": -0.92}  # every refusal lost, with seeds that disagree a lot
    iv = seed_aware("refusal_harmful", [1.0], [0.0, 0.08], d, 32, b_prior=None)
    assert iv["lo"] == -1.0 and iv["hi"] < -0.5 and iv["p"] < 0.05
    ppl = seed_aware("ppl_general", [2.0, 2.4], [3.0, 9.0], {"delta": 4, "lo": 3, "hi": 5}, 399)
    assert ppl["hi"] > 1  # not a share: untouched
