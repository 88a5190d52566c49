"""Every report surface shows the rate a cell was trained with: the chosen trial's where a search ran."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from fake_results import binary, ppl_items, save_cell

from harness import store
from harness.cli import main
from harness.report import rates

REPO = Path(__file__).resolve().parent.parent
CENTRE, CHOSEN = 0.001, 0.003  # fake_results trains every cell at 0.001


def _trials(chosen: int) -> list[dict]:
    return [{"learning_rate": CENTRE * m, "multiplier": m, "tuning_loss": 1.0 - 0.1 * i, "tokens": 1000,
             "objective": "loss", "chosen": i == chosen} for i, m in enumerate((0.3, 1.0, 3.0))]


def _folder(d: Path, model: str = "base-a", chosen: int = 2) -> None:
    save_cell(d, "base", "base", {"task_exact_match": binary(0.1, 60, 0), "ppl_general": ppl_items(1.0)},
              model=model)
    save_cell(d, f"lora r=4 lr={CENTRE:g}", "lora", {"task_exact_match": binary(0.9, 60, 1),
                                                     "ppl_general": ppl_items(1.1, seed=1)},
              params={"r": 4}, model=model, trainable=4096, lr_trials=_trials(chosen))


def test_the_chosen_rate_on_every_surface(tmp_path, capsys):
    d = tmp_path / "m"
    _folder(d)
    assert main(["leaderboard", str(d)]) == 0
    board = (d / "LEADERBOARD.md").read_text("utf-8")
    want = f"lora r=4 lr={CHOSEN:g}"
    assert want in board and f"lr={CENTRE:g}`" not in board and f"lr={CENTRE:g} " not in board
    assert f"{CHOSEN:g} (x3 of {CENTRE:g}; best loss of 3)" in board  # the lr column
    takeaways = board.split("## Takeaways")[1].split("## ")[0]
    assert want in takeaways
    summary = json.loads((d / "summary.json").read_text("utf-8"))["rows"]
    lora = next(r for r in summary if r["strategy"] == "lora")
    assert (lora["label"], lora["learning_rate"], lora["lr_centre"]) == (want, CHOSEN, CENTRE)
    with open(d / "summary.csv", encoding="utf-8") as f:
        row = next(r for r in csv.DictReader(f) if r["strategy"] == "lora")
    assert float(row["learning_rate"]) == CHOSEN and row["label"] == want
    html = (d / "report.html").read_text("utf-8")
    assert want in html and f"lr {CHOSEN:g}" in html
    e = tmp_path / "e"
    _folder(e, chosen=1)  # the candidate's search chose the centre
    capsys.readouterr()
    main(["compare", str(d), str(e)])
    assert f"{want} (candidate: lora r=4 lr={CENTRE:g})" in capsys.readouterr().out


def test_seeds_that_chose_differently_show_each_rate():
    def result(seed, chosen):
        return {"label": f"lora r=4 seed={seed}", "cell": {"strategy": "lora", "train": {"learning_rate": CENTRE}},
                "lr_trials": _trials(chosen)}
    both = [result(0, 2), result(1, 1)]
    assert rates.label(both) == f"lora r=4 lr={CHOSEN:g}/{CENTRE:g}"
    assert rates.rate_text(both) == f"{CHOSEN:g}/{CENTRE:g} (x3/1 of {CENTRE:g}; best loss of 3, per seed)"
    unsearched = {"label": "full", "cell": {"strategy": "full", "train": {"learning_rate": 3e-4}}}
    assert (rates.label([unsearched]), rates.rate_text([unsearched])) == ("full", "0.0003 (set)")


@pytest.mark.parametrize("folder", sorted(p.name for p in (REPO / "results").iterdir()
                                          if (p / "summary.json").exists()))
def test_committed_results_show_the_chosen_trials_rate(folder):
    """Each searched cell's `learning_rate` in the committed summary is its trial with `chosen: true`."""
    root = REPO / "results" / folder
    rows = json.loads((root / "summary.json").read_text("utf-8"))["rows"]
    for path in sorted((root / "cells").glob("*.json")):
        result = json.loads(path.read_text("utf-8"))
        chosen = store.chosen_trial(result)
        if not chosen:
            continue
        row = next(r for r in rows if result["id"] in r["ids"])
        assert row["learning_rate"] == chosen["learning_rate"], (folder, result["id"])
        assert f"lr={chosen['learning_rate']:g}" in row["label"]


def _derived_bracket(trials: list[dict], limit: int) -> str | None:
    """From the trials alone: where the chosen multiplier sits in the grid the search ended with."""
    grid = sorted(t["multiplier"] for t in trials)
    chosen = next(t for t in trials if t["chosen"])
    if len(grid) < 2 or chosen["tuning_loss"] is None:
        return None
    if chosen["multiplier"] in (grid[0], grid[-1]):
        assert sum(t.get("extension", False) for t in trials) == limit, "an edge is only where the limit stopped it"
        return "edge"
    return "extended" if any(t.get("extension") for t in trials) else "interior"


def test_the_committed_smoke_search_brackets_every_cell_or_marks_it_edge():
    """Each searched smoke cell's interior / extended / edge, derived from its lr_trials, is what the cell, the
    leaderboard header's counts and its lr column say; no chosen rate sits at an end of its trials unmarked."""
    root = REPO / "results" / "smoke"
    derived = {}
    for path in sorted((root / "cells").glob("*.json")):
        result = json.loads(path.read_text("utf-8"))
        if not result.get("lr_trials") or result["cell"].get("lr_from"):  # a later seed trains at the search's rate
            continue
        limit = result["cell"]["tuning"]["max_extensions"]
        derived[rates.label([result])] = kind = _derived_bracket(result["lr_trials"], limit)
        assert result["usage"]["tuning_bracket"] == kind, result["label"]
    assert derived and None not in derived.values()
    board = (root / "LEADERBOARD.md").read_text("utf-8")
    line = next(x for x in board.splitlines() if x.startswith("- **Learning-rate search:**"))
    counts = {k: sum(v == k for v in derived.values()) for k in ("interior", "extended", "edge")}
    assert line.startswith("- **Learning-rate search:** " + ", ".join(f"{n} {k}" for k, n in counts.items() if n))
    for label, kind in derived.items():
        row = next(x for x in board.splitlines() if x.startswith(f"| {label} ") and "best loss of" in x)
        assert ("**edge**" in row) == (kind == "edge") and (", extended" in row) == (kind == "extended")
