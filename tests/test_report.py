"""The leaderboard shows what was measured: failed cells with their reason, seeds as mean ± std, paired deltas."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from fake_results import annotated_rows, binary, ppl_items, save_cell

from harness.cli import main
from harness.report.leaderboard import write_leaderboard

N = 200


@pytest.fixture()
def results(tmp_path):
    """base, lora (two seeds), full, prefix (much worse), and a cell that crashed."""
    d = tmp_path / "m"
    save_cell(d, "base", "base", {"task_exact_match": binary(0.1, N, 0), "ppl_general": ppl_items(1.0),
                                  "refusal_harmful": binary(0.95, 60, 5)})
    for seed, p in ((0, 0.80), (1, 0.90)):
        save_cell(d, f"lora r=4 seed={seed}", "lora", {"task_exact_match": binary(p, N, 10 + seed),
                                                      "ppl_general": ppl_items(1.2, seed=seed),
                                                      "refusal_harmful": binary(0.9, 60, 6 + seed)},
                  seed=seed, params={"r": 4}, trainable=4096)
    save_cell(d, "full", "full", {"task_exact_match": binary(0.88, N, 21), "ppl_general": ppl_items(1.1, seed=3),
                                  "refusal_harmful": binary(0.7, 60, 8)}, trainable=100000,
              lr_trials=[{"learning_rate": 1e-4, "val_loss": 1.5, "chosen": False},
                         {"learning_rate": 3e-4, "val_loss": 1.2, "chosen": True}])
    save_cell(d, "prefix", "prefix", {"task_exact_match": binary(0.3, N, 30), "ppl_general": ppl_items(2.0, seed=4),
                                      "refusal_harmful": binary(0.1, 60, 9)}, trainable=2048)
    save_cell(d, "bitfit", "bitfit", None, status="failed", reason="crashed, exit status 1: CUDA error: out of memory",
              usage={})
    save_cell(d, "adapter", "adapter", {"task_exact_match": binary(0.95, N, 40)}, status="over_budget",
              reason="stopped by the time cap before the token budget", trainable=1024)
    save_cell(d, "ia3", "ia3", None, status="not_applicable", reason="model has no target modules", usage={})
    return d


def _rows(d):
    return {r["label"]: r for r in annotated_rows(d)}


def _tables(md: str) -> list[list[str]]:
    blocks, current = [], []
    for line in md.splitlines() + [""]:
        if line.startswith("|"):
            current.append(line)
        elif current:
            blocks.append(current)
            current = []
    return blocks


def test_failed_cell_is_shown_with_its_reason(results):
    md = write_leaderboard(results).read_text("utf-8")
    row = next(line for line in md.splitlines() if line.startswith("| bitfit"))
    assert "**failed**" in row
    assert "- `bitfit` (failed): crashed, exit status 1: CUDA error: out of memory" in md
    assert "- `adapter` (over_budget): stopped by the time cap before the token budget" in md
    assert "- `ia3` (not_applicable): model has no target modules" in md
    over = next(line for line in md.splitlines() if line.startswith("| adapter"))
    assert "**over_budget**" in over and "0.940 [0.905, 0.970]" in over and "#" not in over  # measured, but not ranked


def test_seeds_collapse_into_mean_and_std(results):
    rows = _rows(results)
    assert "lora r=4 seed=0" not in rows and rows["lora r=4"]["seeds"] == [0, 1]
    values = [np.mean(binary(p, N, 10 + s)) for s, p in ((0, 0.80), (1, 0.90))]
    m = rows["lora r=4"]["metrics"]["task_exact_match"]
    assert m["value"] == pytest.approx(np.mean(values)) and m["std"] == pytest.approx(np.std(values, ddof=1))
    md = write_leaderboard(results).read_text("utf-8")
    assert f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f}" in md


def test_deltas_are_paired_over_items_and_equal_hand_computed_values(results):
    full = _rows(results)["full lr=0.0003"]["vs_base"]  # labelled with the rate its search chose
    a, b = np.array(binary(0.1, N, 0)), np.array(binary(0.88, N, 21))
    em = full["task_exact_match"]
    # the delta is the mean per-item difference; its paired bootstrap interval is, for 200 items, the normal
    # approximation mean ± 1.96 sd(differences) / sqrt(200) up to Monte-Carlo error
    d = b - a
    assert em["delta"] == pytest.approx(d.mean()) and em["paired"] and em["kind"] == "mean"
    assert (em["hi"] - em["lo"]) / 2 == pytest.approx(1.96 * d.std(ddof=1) / np.sqrt(N), rel=0.1)
    # perplexity: exp(sum NLL / sum tokens) of each side, on the same documents
    (nll_a, n), (nll_b, _) = ppl_items(1.0), ppl_items(1.1, seed=3)
    assert full["ppl_general"]["delta"] == pytest.approx(np.exp(sum(nll_b) / sum(n)) - np.exp(sum(nll_a) / sum(n)))
    assert full["ppl_general"]["kind"] == "perplexity" and full["ppl_general"]["lo"] > 0
    # two seeds: the per-item scores averaged over seeds, then paired with the base
    seeds = np.mean([binary(0.80, N, 10), binary(0.90, N, 11)], axis=0)
    assert _rows(results)["lora r=4"]["vs_base"]["task_exact_match"]["delta"] == pytest.approx((seeds - a).mean())


def test_corpus_metric_deltas_are_corpus_deltas_and_summaries_say_so(tmp_path):
    from harness.evals.generation import bleu

    refs = [["the cat sat on the mat"]] * 2
    d = tmp_path / "m"
    ids = {"task_bleu": ["i1", "i2"]}
    # base: sentence BLEU 53.73 and 60.65, corpus BLEU 56.39 (worked out in test_evals); the trained cell is exact
    save_cell(d, "base", "base", {"task_bleu": bleu(["the cat sat on a mat", "the cat sat on"], refs), "_ids": ids})
    save_cell(d, "full", "full", {"task_bleu": bleu(["the cat sat on the mat"] * 2, refs), "_ids": ids})
    delta = _rows(d)["full"]["vs_base"]["task_bleu"]
    assert delta["delta"] == pytest.approx(100 - 56.388, abs=1e-3)  # the mean of sentence deltas would be 42.81
    assert delta["kind"] == "corpus bleu" and delta["paired"]
    write_leaderboard(d, plot=False)
    csv = pd.read_csv(d / "summary.csv").set_index("label")
    assert csv.loc["full", "task_bleu_delta"] == pytest.approx(43.612, abs=1e-3)
    assert csv.loc["full", "task_bleu_delta_kind"] == "corpus bleu"
    summary = json.loads((d / "summary.json").read_text("utf-8"))
    assert summary["rows"][1]["vs_base"]["task_bleu"]["kind"] == "corpus bleu"


def test_leaderboard_names_each_interval_method_and_pairs_reordered_items_by_id(tmp_path):
    d = tmp_path / "m"
    people = [f"p{i // 4}" for i in range(96)]
    ids = [f"item{i}" for i in range(96)]
    base = binary(0.3, 96, 1)
    save_cell(d, "base", "base", {"task_exact_match": base, "refusal_harmful": [1.0] * 48,
                                  "_ids": {"task_exact_match": ids, "refusal_harmful": ids[:48]},
                                  "_groups": {"task_exact_match": people}}, intervals=True)
    order = np.random.default_rng(0).permutation(96)  # the same items, written in another order
    same = [base[i] for i in order]
    save_cell(d, "full", "full", {"task_exact_match": same, "refusal_harmful": [1.0] * 48,
                                  "_ids": {"task_exact_match": [ids[i] for i in order], "refusal_harmful": ids[:48]},
                                  "_groups": {"task_exact_match": [people[i] for i in order]}}, intervals=True)
    delta = _rows(d)["full"]["vs_base"]["task_exact_match"]
    assert (delta["delta"], delta["lo"], delta["hi"]) == (0.0, 0.0, 0.0)  # each item met itself
    assert delta["method"] == "paired-cluster-bootstrap" and delta["note"] is None
    md = write_leaderboard(d, plot=False).read_text("utf-8")
    assert "- interval: Wilson score interval at the effective sample size of grouped items" in md
    assert "- interval: Wilson score interval (a proportion: every item scores 0 or 1): refusal harmful" in md
    assert "- Δ interval: paired cluster bootstrap: the same groups resampled for both cells: task EM" in md
    refusal = _rows(d)["base"]["metrics"]["refusal_harmful"]
    assert refusal["ci_method"] == "wilson" and refusal["lo"] == pytest.approx(48 / (48 + 1.959964 ** 2))


def test_ranks_and_indistinguishable_from_best(results):
    rows = _rows(results)
    em = {label: r["rank"].get("task_exact_match") for label, r in rows.items()}
    # task EM: base 0.105, lora 0.855 (two seeds), full 0.880, prefix 0.285; cells not ok are not ranked
    assert em == {"base": 4, "lora r=4": 2, "full lr=0.0003": 1, "prefix": 3, "bitfit": None, "adapter": None,
                  "ia3": None}
    ppl = {label: r["rank"].get("ppl_general") for label, r in rows.items()}
    assert ppl["base"] == 1 and ppl["prefix"] == 4  # lower is better
    near = {label: r["near_best"].get("task_exact_match") for label, r in rows.items()}
    assert near == {"base": False, "lora r=4": True, "full lr=0.0003": False, "prefix": False, "bitfit": None,
                    "adapter": None, "ia3": None}
    md = write_leaderboard(results, plot=False).read_text("utf-8")
    assert "**0.880** [" in md and "0.855 ± 0.099 #2 ≈" in md


def test_markdown_tables_are_valid_and_files_are_written(results):
    assert main(["leaderboard", str(results)]) == 0
    md = (results / "LEADERBOARD.md").read_text("utf-8")
    tables = _tables(md)
    assert len(tables) >= 3
    for table in tables:
        widths = {line.replace("\\|", "").count("|") for line in table}
        assert len(widths) == 1 and set(table[1].replace("|", "").replace(":", "").replace(" ", "")) == {"-"}
    assert "![pareto](pareto.png)" in md and (results / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    assert (results / "forgetting.png").read_bytes()[:4] == b"\x89PNG"
    csv = pd.read_csv(results / "summary.csv")
    assert {"task_exact_match_delta_lo", "task_exact_match_rank", "usage_peak_memory_mb"} <= set(csv.columns)
    summary = json.loads((results / "summary.json").read_text("utf-8"))
    assert [r["label"] for r in summary["rows"]][0] == "base"
    assert "3e-4 → 1.200" not in md and "**0.0003 → 1.200**" in md  # the learning-rate search, chosen in bold


def test_header_names_the_setup_and_data_hygiene(results):
    line = "data: 520 rows -> 512 train / 4 validation / 4 test; dropped: 3 duplicate exact"
    (results / "data_report.json").write_text(json.dumps({"rows_read": 520, "summary": line}))
    md = write_leaderboard(results, plot=False).read_text("utf-8")
    assert "`base-a`" in md and "1,000 training tokens per cell" in md and "torch 2.13.0" in md
    assert f"**Data hygiene:** {line}" in md


def test_unreadable_results_exit_2(tmp_path, capsys):
    assert main(["leaderboard", str(tmp_path)]) == 2
    assert str(tmp_path) in capsys.readouterr().err


def test_cells_whose_items_share_no_id_are_refused(tmp_path, capsys):
    d = tmp_path / "m"
    for name, seed, ids in (("base", 0, "abcdefgh"), ("full", 1, "ijklmnop")):
        save_cell(d, name, name, {"task_exact_match": binary(0.5, 8, seed), "_ids": {"task_exact_match": list(ids)}})
    assert main(["leaderboard", str(d)]) == 2
    assert "task_exact_match: cells" in (err := capsys.readouterr().err) and "no item in common (8 and 8 items" in err
