"""The compact headline table: one task metric, one forgetting summary, one safety summary, and the costs.

LEADERBOARD.md shows it at the top and report.html as its sortable first table. Both render the
same frame, and every metric cell is formatted by table.py, so ranks, intervals and the bold / ≈ /
✱ marks mean what they mean in the wide tables below.

- task: the primary metric (table.primary_metric), as value [CI] #rank;
- forgetting: the change of one general-ability metric against the base model (general-text
  perplexity where measured, else the first general metric), as Δ [CI] with ✱;
- safety: the harmful-prompt refusal rate where measured (else the first safety metric), as value [CI] #rank;
- costs: trainable parameters, train s (every training phase: all learning-rate trials with their scoring,
  wall; results stored before timing: the trials' training seconds), eval s (every eval suite, wall; "–"
  before timing; a base result reused from another matrix is marked) and peak memory.

    h = headline(rows)               # rows from table.annotate, in leaderboard order
    h.text.to_markdown(index=False)  # what LEADERBOARD.md shows
    h.values                         # the numbers behind each cell (sort keys), NaN where there is none
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from harness.report.frame import BASE
from harness.report.table import (
    LOAD_MARK,
    format_delta,
    format_number,
    format_value,
    heading,
    is_side_effect,
    metric_names,
    primary_metric,
)
from harness.suites import describe

SAFETY = "refusal_harmful"


@dataclass(frozen=True)
class Headline:
    text: pd.DataFrame  # one row per leaderboard row, display strings (markdown marks: **best**)
    values: pd.DataFrame  # same shape: the number each cell sorts by
    metrics: dict  # role ("task", "forgetting", "safety") -> metric name or None


def headline_metrics(rows: list[dict]) -> dict:
    """The metric shown for each role; None where the folder measured nothing of that kind."""
    names = metric_names(rows)
    general = [n for n in names if describe(n).general]
    perplexity = [n for n in general if not describe(n).higher_is_better]
    safety = [n for n in names if is_side_effect(n) and not describe(n).general]
    return {"task": primary_metric(names), "forgetting": next(iter(perplexity + general), None),
            "safety": SAFETY if SAFETY in names else next(iter(safety), None)}


def _nan(x) -> float:
    return float("nan") if x is None else float(x)


def headline(rows: list[dict]) -> Headline:
    roles = headline_metrics(rows)
    task, forget, safety = roles["task"], roles["forgetting"], roles["safety"]
    text, values = [], []
    for r in rows:
        t, v = {"cell": r["label"]}, {"cell": r["label"]}
        if task:
            t[heading(task)] = format_value(r, task)
            v[heading(task)] = _nan((r["metrics"].get(task) or {}).get("value"))
        if forget:
            t[f"forgetting: Δ {heading(forget)}"] = format_delta(r, forget)
            v[f"forgetting: Δ {heading(forget)}"] = _nan((r["vs_base"].get(forget) or {}).get("delta"))
        if safety:
            t[f"safety: {heading(safety)}"] = format_value(r, safety)
            v[f"safety: {heading(safety)}"] = _nan((r["metrics"].get(safety) or {}).get("value"))
        phases = (r.get("timing") or {}).get("phases") or {}
        trained = None if r["strategy"] == BASE else phases.get("train")  # a base cell trains nothing
        if trained is None and r["strategy"] != BASE:  # stored before timing: the training seconds usage kept
            trained = r["usage"].get("tuning_seconds", r["usage"].get("seconds"))
        for head, fmt, value in (("trainable params", "{:,.0f}", r["trainable_params"]),
                                 ("train s", "{:,.1f}", trained), ("eval s", "{:,.1f}", phases.get("eval")),
                                 ("peak MB", "{:,.0f}", r["usage"].get("peak_memory_mb"))):
            t[head], v[head] = format_number(value, fmt), _nan(value)
        for head in ("train s", "eval s"):
            if r.get("high_load") and t[head] != "–":
                t[head] += f" {LOAD_MARK}"
        if r.get("reused_from") and t["eval s"] != "–":
            t["eval s"] += " (reused)"
        t["status"] = r["status"] if r["status"] == "ok" else f"**{r['status']}**"
        v["status"] = r["status"]
        text.append(t)
        values.append(v)
    return Headline(pd.DataFrame(text), pd.DataFrame(values).replace({None: np.nan}), roles)
