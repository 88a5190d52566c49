"""Leaderboard rows with their comparisons: rank per metric, indistinguishable-from-best, delta against the base.

Rules (the leaderboard states them under its tables):
- ranks count only cells with status ok; ties share the better rank;
- a cell is "indistinguishable from the best" on a metric when the interval of its difference to
  the best cell (deltas.difference: paired over items where both scored the same items) includes 0;
- deltas are against the base cell of the same model, with the same interval rule.

    rows = annotate(summarize(load_results(d)), d)
    rows[3]["rank"]["task_exact_match"], rows[3]["near_best"]["task_exact_match"], rows[3]["vs_base"]["ppl_general"]
    summary_frame(rows).to_csv("summary.csv")
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from harness.evals.metrics import describe
from harness.report import deltas
from harness.report.frame import BASE, load_items


def metric_names(rows: list[dict]) -> list[str]:
    return list(dict.fromkeys(n for r in rows for n in r["metrics"]))


def is_side_effect(name: str) -> bool:
    """General-ability and safety metrics: what fine-tuning can break, shown against the base model."""
    m = describe(name)
    return m.general or m.suite == "safety" or name.startswith("refusal")


def primary_metric(names: list[str]) -> str | None:
    """The task-quality metric that orders the table and the plots: task exact match, else the first task metric."""
    quality = [n for n in names if not is_side_effect(n)]
    task = [n for n in quality if describe(n).suite == "task" or n.startswith("task")]
    return "task_exact_match" if "task_exact_match" in names else next(iter(task + quality), None)


def ordered(rows: list[dict]) -> list[dict]:
    """Per model: the base first, then ok cells by rank on the primary metric, then the cells that did not finish."""
    primary = primary_metric(metric_names(rows))
    models = list(dict.fromkeys(r["model"] for r in rows))
    return sorted(rows, key=lambda r: (models.index(r["model"]), r["strategy"] != BASE, r["status"] != "ok",
                                       r["rank"].get(primary, 10**9), r["label"]))


def _scores(items: dict, row: dict, name: str):
    return deltas.seed_scores([items[i] for i in row["ids"]], name)


def annotate(rows: list[dict], results_dir: Path) -> list[dict]:
    """Adds rank, near_best and vs_base (dicts keyed by metric) to every row."""
    items = {i: load_items(results_dir, i) for r in rows for i in r["ids"]}
    bases = {r["model"]: r for r in rows if r["strategy"] == BASE}
    for r in rows:
        r.update(rank={}, near_best={}, vs_base={})
    for name in metric_names(rows):
        up = describe(name).higher_is_better
        ranked = [r for r in rows if r["status"] == "ok" and name in r["metrics"]]
        values = pd.Series([r["metrics"][name]["value"] for r in ranked], dtype=float)
        for r, rank in zip(ranked, values.rank(ascending=not up, method="min")):
            r["rank"][name] = int(rank)
        best = next((r for r in ranked if r["rank"][name] == 1), None)
        for r in ranked:
            d = deltas.difference(best["metrics"][name], r["metrics"][name], _scores(items, best, name),
                                  _scores(items, r, name))
            r["near_best"][name] = r["rank"][name] > 1 and not deltas.significant(d)
        for r in rows:
            base = bases.get(r["model"])
            if base is None or r is base or name not in r["metrics"] or name not in base["metrics"]:
                continue
            r["vs_base"][name] = deltas.difference(base["metrics"][name], r["metrics"][name],
                                                   _scores(items, base, name), _scores(items, r, name))
    return rows


def summary_frame(rows: list[dict]) -> pd.DataFrame:
    """One flat row per leaderboard row: every usage number and every metric with its interval, rank and delta."""
    flat = []
    for r in rows:
        out = {k: r[k] for k in ("label", "model", "strategy", "status", "reason", "learning_rate",
                                 "trainable_params", "total_params", "artifact_bytes")}
        out.update(seeds=len(r["seeds"]), seed_list=" ".join(str(s) for s in r["seeds"]), ids=" ".join(r["ids"]),
                   lr_trials=len(r["lr_trials"]))
        out.update({f"usage_{k}": v for k, v in r["usage"].items()})
        for name, m in r["metrics"].items():
            out.update({name: m["value"], f"{name}_lo": m["lo"], f"{name}_hi": m["hi"], f"{name}_std": m["std"],
                        f"{name}_n": m["n"], f"{name}_rank": r["rank"].get(name),
                        f"{name}_near_best": r["near_best"].get(name)})
            if d := r["vs_base"].get(name):
                out.update({f"{name}_delta": d["delta"], f"{name}_delta_lo": d["lo"], f"{name}_delta_hi": d["hi"],
                            f"{name}_delta_paired": d["paired"]})
        flat.append(out)
    return pd.DataFrame(flat)


def format_number(value, fmt: str = "{:,.0f}") -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else fmt.format(value)


def _signed(fmt: str) -> str:
    return fmt.replace("{:", "{:+", 1)


def format_value(row: dict, name: str) -> str:
    """`0.938 [0.896, 0.979] #7 ≈`: value and interval (or ± std over seeds), rank, marker; **bold** = best."""
    m = row["metrics"].get(name)
    if m is None:
        return "–"
    fmt = describe(name).fmt
    rank = row["rank"].get(name)
    value = fmt.format(m["value"])
    text = f"**{value}**" if rank == 1 else value
    spread = f" ± {fmt.format(m['std'])}" if m["std"] is not None else None
    text += spread or f" [{fmt.format(m['lo'])}, {fmt.format(m['hi'])}]"
    if rank is not None:
        text += f" #{rank}" + (" ≈" if row["near_best"].get(name) else "")
    return text


def format_delta(row: dict, name: str) -> str:
    """`+0.08 [+0.06, +0.09] ✱`: the difference to the base with its interval; ✱ = the interval excludes 0."""
    d = row["vs_base"].get(name)
    if d is None:
        return "–"
    f = describe(name).fmt
    return (f"{_signed(f).format(d['delta'])} [{_signed(f).format(d['lo'])}, {_signed(f).format(d['hi'])}]"
            + (" ✱" if deltas.significant(d) else "") + ("" if d["paired"] else " (unpaired)"))


def heading(name: str) -> str:
    m = describe(name)
    return f"{m.label} {'↑' if m.higher_is_better else '↓'}"
