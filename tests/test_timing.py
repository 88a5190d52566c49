"""Every second of a cell is accounted for: phases that sum to its wall seconds, shown as train s and eval s."""

from __future__ import annotations

import shutil
import time

import pandas as pd
import pytest
from conftest import TINY_WORLD
from fake_results import binary, save_cell

from harness import timing
from harness.config import MatrixSpec
from harness.matrix import expand


def _cells(tmp_path, tiny_model_dir, **extra):
    shutil.copytree(TINY_WORLD / "data" / "record", tmp_path / "record")
    spec = MatrixSpec.model_validate({
        "name": "t", "models": [str(tiny_model_dir)], "data": {"path": str(tmp_path / "record"), "truncation": "drop"},
        "budget": {"tokens": 200}, "train": {"batch_size": 4}, "strategies": ["bitfit"],
        "eval": {"suites": ["perplexity", "task"], "limit": 4, "max_new_tokens": 4}, **extra})
    return expand(spec, tmp_path)


def _check_sums(t: dict) -> None:
    kinds = [p["phase"] for p in t["phases"]]
    assert kinds[-1] == "other" and kinds.count("other") == 1
    assert sum(p["wall"] for p in t["phases"]) == pytest.approx(t["wall_seconds"], abs=0.01)
    assert all(p["wall"] >= 0 for p in t["phases"]) and all(p.get("cpu", 0) >= 0 for p in t["phases"])


def test_a_tuned_cell_records_each_trial_each_suite_and_the_start(tmp_path, tiny_model_dir):
    from harness.cell import run_cell

    cell = _cells(tmp_path, tiny_model_dir, tuning={"lr_multipliers": [0.5, 2.0]})[1]
    result = run_cell(cell, tmp_path / "results", progress=lambda *_: None, spawned_at=time.time() - 2.0)
    t = result["timing"]
    _check_sums(t)
    assert t["phases"][0]["phase"] == "start" and t["phases"][0]["wall"] >= 2.0  # from the (simulated) spawn
    names = [(p["phase"], p.get("name")) for p in t["phases"]]
    trials = [n for k, n in names if k == "train"]
    assert trials[:2] == [f"lr={cell.train.learning_rate * m:.3g} ({i}/2)" for i, m in ((1, 0.5), (2, 2.0))]
    assert [n for k, n in names if k == "eval"] == ["perplexity", "task"]
    assert {"load", "prepare", "data", "sanity", "store"} <= {k for k, _ in names}
    assert result["wall_seconds"] == pytest.approx(t["wall_seconds"], abs=0.06)
    assert timing.seconds(t, "train") >= sum(tr["seconds"] for tr in result["lr_trials"])  # the trials, and more
    assert timing.suite_seconds(t) == {"perplexity": t["phases"][names.index(("eval", "perplexity"))]["wall"],
                                       "task": t["phases"][names.index(("eval", "task"))]["wall"]}


def test_an_isolated_base_cell_counts_its_process_start_and_reports_each_suite(tmp_path, tiny_model_dir):
    from harness.runner import run_isolated

    base = _cells(tmp_path, tiny_model_dir)[0]
    lines = []
    result = run_isolated(base, tmp_path / "results", lines.append)
    assert result["status"] == "ok", result.get("reason")
    t = result["timing"]
    _check_sums(t)
    assert t["phases"][0] == {**t["phases"][0], "phase": "start", "name": "process"} and t["phases"][0]["wall"] > 0
    assert timing.seconds(t, "train") == 0.0 and "usage" not in result  # a base cell trains nothing
    suites = [(x["suite"], x["seconds"] is None) for x in lines if "suite" in x]
    assert suites == [("perplexity", True), ("perplexity", False), ("task", True), ("task", False)]
    ends = {x["suite"]: x["seconds"] for x in lines if "suite" in x and x["seconds"] is not None}
    assert ends == timing.suite_seconds(t)


def _timed(train: float, evals: dict[str, float], tasks: dict | None = None) -> dict:
    phases = [{"phase": "start", "name": "process", "wall": 1.0}, {"phase": "train", "name": "final", "wall": train},
              *({"phase": "eval", "name": n, "wall": s} for n, s in evals.items()), {"phase": "other", "wall": 0.5}]
    out = {"phases": phases, "wall_seconds": 1.5 + train + sum(evals.values())}
    return {**out, "benchmark_tasks": tasks} if tasks else out


def test_the_leaderboard_shows_train_and_eval_seconds_and_where_the_time_went(tmp_path):
    from harness.report.leaderboard import write_leaderboard

    d = tmp_path / "timed"
    save_cell(d, "base", "base", {"task_exact_match": binary(0.1, 40, 0)}, timing=_timed(0.0, {"task": 3.25}))
    save_cell(d, "lora", "lora", {"task_exact_match": binary(0.9, 40, 1)}, trainable=10,
              timing=_timed(12.0, {"task": 4.0, "benchmarks": 6.0}, {"mmlu": 5.5}))
    save_cell(d, "old", "full", {"task_exact_match": binary(0.8, 40, 2)}, trainable=20)  # stored before timing
    md = write_leaderboard(d, plot=False).read_text("utf-8")
    head = md.splitlines()[md.splitlines().index("## Headline") + 2].split("|")
    col = {h.strip(): i for i, h in enumerate(head)}
    table = md.splitlines()[md.splitlines().index("## Headline") + 4:]
    rows = {r.split("|")[1].strip(): r.split("|") for r in table[:table.index("")]}
    assert [rows["base"][col[c]].strip() for c in ("train s", "eval s")] == ["–", "3.2"]
    assert [rows["lora"][col[c]].strip() for c in ("train s", "eval s")] == ["12.0", "10.0"]
    assert [rows["old"][col[c]].strip() for c in ("train s", "eval s")] == ["2.0", "–"]  # usage seconds; no eval s
    section = md[md.index("## Where the time went"):]
    lora = next(x for x in section.splitlines() if x.startswith("| lora"))
    assert [c.strip() for c in lora.split("|")[2:-1]] == ["23.5", "1.0", "–", "–", "–", "12.0", "4.0", "6.0", "0.5",
                                                          "mmlu 5.5"]
    assert "| old" not in section
    csv = pd.read_csv(d / "summary.csv").set_index("label")
    assert csv.loc["lora", "seconds_train"] == 12.0 and csv.loc["lora", "seconds_eval_benchmarks"] == 6.0
    assert csv.loc["base", "seconds_eval"] == 3.25 and pd.isna(csv.loc["old", "seconds_eval"])
    html = (d / "report.html").read_text("utf-8")
    assert "<th>eval benchmarks s</th>" in html and "<th>train s</th>" in html
