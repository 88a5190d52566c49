"""The regression gate: 1 on a planted regression, 0 on identical or within-noise results, 2 on unusable input."""

from __future__ import annotations

import pytest
from fake_results import binary, ppl_items, save_cell

from harness.cli import main

N = 300


def _matrix(d, model: str, task: list[float], ppl_scale: float = 1.2, lora_status: str = "ok") -> None:
    """A base cell and a lora cell on `model`; the lora cell's task items are `task`."""
    save_cell(d, "base", "base", {"task_exact_match": binary(0.1, N, 0), "ppl_general": ppl_items(1.0)}, model=model)
    save_cell(d, "lora r=4", "lora", {"task_exact_match": task, "ppl_general": ppl_items(ppl_scale, seed=1)},
              params={"r": 4}, model=model, trainable=4096, status=lora_status,
              reason=None if lora_status == "ok" else "crashed, exit status 1: boom")


def _worse(scores: list[float], k: int) -> list[float]:
    """The same items with the first k correct answers turned wrong."""
    out, flipped = list(scores), 0
    for i, s in enumerate(out):
        if s == 1.0 and flipped < k:
            out[i], flipped = 0.0, flipped + 1
    return out


@pytest.fixture()
def baseline(tmp_path):
    d = tmp_path / "qwen2.5"
    _matrix(d, "Qwen/Qwen2.5-0.5B", binary(0.8, N, 1))
    return d


def test_planted_regression_exits_1(baseline, tmp_path, capsys):
    cand = tmp_path / "qwen3"
    _matrix(cand, "Qwen/Qwen3-0.6B", _worse(binary(0.8, N, 1), 30))  # 10 points worse on the same items
    assert main(["compare", str(baseline), str(cand), "--tolerance", "0.02"]) == 1
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if "task_exact_match" in line and "lora" in line)
    assert "regressed" in row and "-0.100" in row and "paired" in row
    verdicts = [line.rstrip(" |").rsplit("|", 1)[-1].strip() for line in out.splitlines() if line.startswith("| ")]
    assert verdicts[1] == "regressed" and verdicts[-1] == "indistinguishable"  # regressions listed first


def test_identical_results_exit_0(baseline, tmp_path, capsys):
    cand = tmp_path / "same"
    _matrix(cand, "Qwen/Qwen3-0.6B", binary(0.8, N, 1))
    assert main(["compare", str(baseline), str(cand)]) == 0
    assert "0 regressed, 0 improved, 0 worse, within tolerance, 4 indistinguishable" in capsys.readouterr().out


def test_difference_within_noise_exits_0(baseline, tmp_path, capsys):
    cand = tmp_path / "noise"
    _matrix(cand, "Qwen/Qwen3-0.6B", _worse(binary(0.8, N, 1), 1))  # one item of 300
    assert main(["compare", str(baseline), str(cand)]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if "task_exact_match" in line and "lora" in line)
    assert "indistinguishable" in row


def test_significant_change_within_tolerance_passes_and_improvement_is_reported(baseline, tmp_path, capsys):
    cand = tmp_path / "slightly"
    _matrix(cand, "Qwen/Qwen3-0.6B", _worse(binary(0.8, N, 1), 30), ppl_scale=1.0)
    assert main(["compare", str(baseline), str(cand), "--tolerance", "0.2", "--tolerance", "ppl_general=0.5"]) == 0
    out = capsys.readouterr().out
    assert "worse, within tolerance" in out and "improved" in out  # lower general perplexity


def test_candidate_cell_that_failed_is_a_regression(baseline, tmp_path, capsys):
    cand = tmp_path / "crashed"
    _matrix(cand, "Qwen/Qwen3-0.6B", binary(0.8, N, 1), lora_status="failed")
    assert main(["compare", str(baseline), str(cand)]) == 1
    assert "crashed, exit status 1: boom" in capsys.readouterr().out


def test_small_set_warns_and_unaligned_items_fall_back_to_unpaired(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    _matrix(a, "m1", binary(0.8, 40, 1))
    _matrix(b, "m2", binary(0.8, 41, 2))
    assert main(["compare", str(a), str(b), "--tolerance", "0.01", "--metrics", "task_exact_match"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if "task_exact_match" in line and "lora" in line)
    assert "unpaired" in row and "are wider than the tolerance 0.01 in 1 cell(s)" in out


@pytest.mark.parametrize("damage", ["no_cells", "bad_json", "no_common", "unknown_metric", "bad_tolerance"])
def test_unusable_input_exits_2(baseline, tmp_path, capsys, damage):
    cand = tmp_path / "cand"
    args = []
    if damage == "no_cells":
        cand.mkdir()
    elif damage == "bad_json":
        _matrix(cand, "m2", binary(0.8, N, 1))
        broken = next((cand / "cells").glob("*.json"))
        broken.write_text("{not json")
    elif damage == "no_common":
        save_cell(cand, "full", "full", {"task_exact_match": binary(0.8, N, 1)}, model="m2")
    else:
        _matrix(cand, "m2", binary(0.8, N, 1))
        args = ["--metrics", "mmlu_acc"] if damage == "unknown_metric" else ["--tolerance", "lots"]
    assert main(["compare", str(baseline), str(cand), *args]) == 2
    err = capsys.readouterr().err
    assert (str(broken) if damage == "bad_json" else str(cand) if damage != "bad_tolerance" else "lots") in err


def test_multiplying_the_regression_is_monotone(baseline, tmp_path):
    """More flipped items never turn a regression back into a pass."""
    codes = []
    for k in (0, 3, 15, 45):
        cand = tmp_path / f"k{k}"
        _matrix(cand, "m2", _worse(binary(0.8, N, 1), k))
        codes.append(main(["compare", str(baseline), str(cand), "--tolerance", "0.02"]))
    assert codes == sorted(codes) and codes[0] == 0 and codes[-1] == 1


def _with_ids(d, model: str, scores: list[float], ids: list[str]) -> None:
    """base and lora cells whose task items carry ids (the lora cell's scores are `scores`)."""
    save_cell(d, "base", "base", {"task_exact_match": binary(0.1, len(ids), 0), "_ids": {"task_exact_match": ids}},
              model=model)
    save_cell(d, "lora r=4", "lora", {"task_exact_match": scores, "_ids": {"task_exact_match": ids}},
              params={"r": 4}, model=model, trainable=4096)


def test_an_eval_file_changed_at_the_same_size_is_paired_by_id_not_position(tmp_path, capsys):
    """100 of 300 items replaced by harder ones (all wrong) and the file reordered: the model did not change."""
    a, b = tmp_path / "a", tmp_path / "b"
    ids = [f"q{i}" for i in range(N)]
    scores = binary(0.8, N, 1)
    _with_ids(a, "m1", scores, ids)
    kept = list(range(100, N))[::-1]  # the 200 items still there, in another order, each scoring as before
    _with_ids(b, "m2", [scores[i] for i in kept] + [0.0] * 100,
              [ids[i] for i in kept] + [f"new{i}" for i in range(100)])
    assert main(["compare", str(a), str(b), "--tolerance", "0.02"]) == 0  # by position it would regress by 0.2
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if "task_exact_match" in line and "lora" in line)
    assert "+0.000 [+0.000, +0.000]" in row and "indistinguishable" in row
    assert "paired the 200 items both sides scored (100 only in the first, 100 only in the second)" in out


def test_items_with_no_id_in_common_are_refused_and_old_files_pair_by_position(tmp_path, capsys):
    a, b, old = tmp_path / "a", tmp_path / "b", tmp_path / "old"
    _with_ids(a, "m1", binary(0.8, N, 1), [f"q{i}" for i in range(N)])
    _with_ids(b, "m2", binary(0.8, N, 1), [f"other{i}" for i in range(N)])
    assert main(["compare", str(a), str(b)]) == 2
    err = capsys.readouterr().err
    assert str(b) in err and "no item in common (300 and 300 items, every id different)" in err
    _matrix(old, "m3", binary(0.8, N, 1))  # items files written before ids were stored
    assert main(["compare", str(a), str(old)]) == 0
    assert "no item ids on one side (items written before ids were stored): paired by position" in (
        capsys.readouterr().out)
def _set_metric(d, label: str, name: str, value) -> None:
    """Rewrite one stored metric value and re-save the cell (a fresh checksum: a result that says so, not damage)."""
    from harness import store

    r = next(r for r in store.load_all(d) if r["label"] == label)
    if value == "drop":  # a candidate matrix that no longer runs the task suite: its results are intact
        for other in store.load_all(d):  # the whole folder is one matrix, one eval config
            if other["id"] != r["id"]:
                other["cell"]["eval"]["suites"] = ["perplexity"]
                store.save(d, other, store.load_items(d, other["id"]))
        del r["metrics"][name]
        r["cell"]["eval"]["suites"] = ["perplexity"]
    else:
        r["metrics"][name]["value"] = value
    store.save(d, r, store.load_items(d, r["id"]))


@pytest.mark.parametrize("case", ["missing_cell", "missing_metric", "nan_metric", "null_metric"])
def test_a_candidate_without_a_usable_result_fails_closed_with_exit_1(baseline, tmp_path, capsys, case):
    cand = tmp_path / "cand"
    _matrix(cand, "m2", binary(0.8, N, 1))
    if case == "missing_cell":
        from harness import store

        lora = next(r for r in store.load_all(cand) if r["label"] == "lora r=4")
        store.cell_file(cand, lora["id"]).unlink()
        store.items_file(cand, lora["id"]).unlink()
    else:
        _set_metric(cand, "lora r=4", "task_exact_match",
                    {"missing_metric": "drop", "nan_metric": float("nan"), "null_metric": None}[case])
    assert main(["compare", str(baseline), str(cand)]) == 1
    out = capsys.readouterr().out
    row = next([c.strip() for c in line.split("|")[1:-1]] for line in out.splitlines()
               if line.startswith("| lora r=4") and "regressed" in line)
    em = ["task_exact_match", "0.813"]  # the baseline's value, then what the candidate has
    expected = {"missing_cell": ["(cell)", "ok", "missing"], "missing_metric": [*em, "missing"],
                "nan_metric": [*em, "nan"], "null_metric": [*em, "None"]}
    assert row[1:4] == expected[case] and row[-1] == "regressed", row
    assert out.rstrip().splitlines()[-1].startswith("**gate: FAIL (exit 1): 1 regression(s)**: Holm over ")


@pytest.mark.parametrize("case", ["baseline_nan", "baseline_null", "baseline_without_metrics"])
def test_a_baseline_that_cannot_be_the_reference_is_an_input_error(baseline, tmp_path, capsys, case):
    cand = tmp_path / "cand"
    _matrix(cand, "m2", binary(0.8, N, 1))
    if case == "baseline_without_metrics":
        from harness import store

        for r in store.load_all(baseline):
            store.save(baseline, {**r, "metrics": {}, "cell": {**r["cell"], "eval": {"suites": []}}},
                       store.load_items(baseline, r["id"]))
    else:
        _set_metric(baseline, "base", "ppl_general", float("nan") if case == "baseline_nan" else None)
    assert main(["compare", str(baseline), str(cand)]) == 2
    err = capsys.readouterr().err
    assert f"{baseline}/cells/" in err and "Traceback" not in err
    assert ("is ok but has no metrics to compare against" if case == "baseline_without_metrics"
            else "baseline metric ppl_general of `base` is") in err


@pytest.mark.parametrize("tolerance", ["nan", "inf", "-inf", "ppl_general=nan", "task_exact_match=inf"])
def test_a_non_finite_tolerance_is_an_input_error(baseline, tmp_path, capsys, tolerance):
    cand = tmp_path / "cand"
    _matrix(cand, "m2", binary(0.8, N, 1))
    assert main(["compare", str(baseline), str(cand), f"--tolerance={tolerance}"]) == 2
    assert f"--tolerance '{tolerance}': must be a finite number, not negative (input error)" in capsys.readouterr().err


def test_a_pass_says_so(baseline, tmp_path, capsys):
    cand = tmp_path / "cand"
    _matrix(cand, "m2", binary(0.8, N, 1))
    assert main(["compare", str(baseline), str(cand)]) == 0
    verdict = capsys.readouterr().out.rstrip().splitlines()[-1]
    assert verdict == ("**gate: pass (exit 0)**: Holm over 4 headline comparison(s) (family: task_exact_match, "
                       "ppl_general); seeds 0 vs 0; training noise: not measured (one seed per side, "
                       "no prior: the intervals cover new items, not a new training run)")
