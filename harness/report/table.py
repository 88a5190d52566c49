"""Leaderboard rows with their comparisons: rank per metric, indistinguishable-from-best, delta against the base.

Rules (the leaderboard states them under its tables):
- numbers print with at most 4 significant digits, from 1e4 on as 2 in scientific form (3.1e8);
- ranks count only cells with status ok; values equal as printed are ties and share the better rank;
- a cell is "best" (bold) only when it beats some other cell: no best where every value is equal;
- a column carries no information when every cell prints the same value, or every interval includes the
  chance level of a multiple-choice benchmark (harness.suites); the leaderboard moves it to its details;
- a cell is "indistinguishable from the best" on a metric when the interval of its difference to
  the best cell includes 0: the paired item term (deltas.difference: paired over items where both scored
  the same items) plus each trained side's training noise where its seeds or a noise prior measure it
  (seed_difference, prior.seed_aware), each pair computed once (Differences);
- deltas are against the base cell of the same model, with the same interval rule (items joined on
  their ids; a corpus metric's delta is a difference of corpus scores); two cells whose items share
  no id raise ResultsError.

    rows = summarize(load_results(d))
    annotate(rows, Differences(rows, d, priors))
    rows[3]["rank"]["task_exact_match"], rows[3]["near_best"]["task_exact_match"], rows[3]["vs_base"]["ppl_general"]
    number(310029503.0, "{:.2f}")  # '3.1e8';  format_interval(m, "{:.2f}") -> '3.1e8 [2.6e8, 3.7e8]'
    summary_frame(rows).to_csv("summary.csv")
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd

from harness.evals.items import PairingError
from harness.report import deltas, prior
from harness.report.frame import BASE, ResultsError, load_items
from harness.suites import describe

LOAD_MARK = "†"  # on time figures of a cell measured while the machine was overloaded (frame.high_load)
SCIENTIFIC_FROM = 1e4  # from here on a value prints as 2 significant digits in scientific form: 3.1e8
MAX_DIGITS = 4  # below it, at most 4 significant digits (5499.47 -> 5499) and never more decimals than the metric's


def _decimals(fmt: str) -> int | None:
    m = re.fullmatch(r"\{:[+,]*\.(\d+)f\}", fmt)
    return int(m.group(1)) if m else None


def number(x, fmt: str = "{:.3f}", scale: float | None = None, signed: bool = False) -> str:
    """`x` in the metric's format with sensible significant figures; `scale` (default |x|) picks the style, so
    a value and its interval print alike."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    decimals = _decimals(fmt)
    if decimals is None:
        return (fmt.replace("{:", "{:+", 1) if signed else fmt).format(x)
    scale = abs(x) if scale is None else scale
    sign = "+" if signed else ""
    if scale >= SCIENTIFIC_FROM:
        return re.sub(r"e\+?(-?)0*(\d)", r"e\1\2", f"{x:{sign}.1e}")
    digits = len(str(int(scale))) if scale >= 1 else 1
    return f"{x:{sign}.{min(decimals, max(0, MAX_DIGITS - digits))}f}"


def format_interval(value: float, lo: float, hi: float, fmt: str, signed: bool = False) -> str:
    """`value [lo, hi]`, all three in one style."""
    scale = max(abs(value), abs(lo), abs(hi))
    return (f"{number(value, fmt, scale, signed)} [{number(lo, fmt, scale, signed)}, "
            f"{number(hi, fmt, scale, signed)}]")


def shown(value: float, name: str) -> float:
    """The value as the table prints it: what prints equal ranks equal."""
    return float(number(value, describe(name).fmt).replace(",", ""))


def uninformative(rows: list[dict], name: str) -> str | None:
    """Why a metric's column tells the cells apart in no way (None when it does)."""
    ok = [r["metrics"][name] for r in rows if r["status"] == "ok" and name in r["metrics"]]
    if len(ok) < 2:
        return None
    if len({shown(m["value"], name) for m in ok}) == 1:
        return f"every cell scores {number(ok[0]['value'], describe(name).fmt)}"
    chance = describe(name).chance
    if chance is not None and all(m["lo"] <= chance <= m["hi"] for m in ok):
        return f"every cell at chance, {chance:g} inside each 95% interval"
    return None


def metric_names(rows: list[dict]) -> list[str]:
    return list(dict.fromkeys(n for r in rows for n in r["metrics"]))


def is_side_effect(name: str) -> bool:
    """General-ability and safety metrics: what fine-tuning can break, shown against the base model."""
    m = describe(name)
    return m.general or m.suite == "safety"


def primary_metric(names: list[str]) -> str | None:
    """The task-quality metric that orders the table and the plots: task exact match, else the first task metric."""
    quality = [n for n in names if not is_side_effect(n)]
    task = [n for n in quality if describe(n).suite == "task"]
    return "task_exact_match" if "task_exact_match" in names else next(iter(task + quality), None)


def ordered(rows: list[dict]) -> list[dict]:
    """Per model: the base first, then ok cells by rank on the primary metric, then the cells that did not finish."""
    primary = primary_metric(metric_names(rows))
    models = list(dict.fromkeys(r["model"] for r in rows))
    return sorted(rows, key=lambda r: (models.index(r["model"]), r["strategy"] != BASE, r["status"] != "ok",
                                       r["rank"].get(primary, 10**9), r["label"]))


def _scores(items: dict, row: dict, name: str):
    return deltas.seed_scores([items[i] for i in row["ids"]], name)


def row_difference(items: dict, a: dict, b: dict, name: str) -> dict:
    """b minus a on one metric (deltas.difference: paired over the items both scored, joined on ids);
    ResultsError when their items share no id."""
    try:
        return deltas.difference(a["metrics"][name], b["metrics"][name], _scores(items, a, name),
                                 _scores(items, b, name))
    except PairingError as e:
        raise ResultsError(f"{name}: cells {', '.join(a['ids'])} and {', '.join(b['ids'])}: {e}") from None


def seed_difference(items: dict, a: dict, b: dict, name: str, priors: prior.Priors | None = None) -> dict:
    """b minus a with training noise: {"d": the item term alone (row_difference), "iv": the seed-aware interval
    (prior.seed_aware: each trained side's values over its seeds, moderated with its prior), "df": the item df}."""
    d = row_difference(items, a, b, name)
    sides = [deltas.seed_scores([items[i] for i in r["ids"]], name) for r in (a, b)]
    df = prior.item_df(d, *(s.groups if s else None for s in sides),
                       min((x for x in (a["metrics"][name].get("n"), b["metrics"][name].get("n")) if x), default=None))
    values = [r["metrics"][name].get("values") or [r["metrics"][name]["value"]] for r in (a, b)]
    found = [priors.get(prior.config_label({"label": r["label"], "cell": {"strategy": r["strategy"]}}), name)
             if priors else None for r in (a, b)]
    iv = prior.seed_aware(name, *values, d, df, *found, a["strategy"] != BASE, b["strategy"] != BASE)
    return {"d": d, "iv": iv, "df": df}


def _shown_difference(t: dict) -> dict:
    """The table's difference: the item term's pairing with the seed-aware interval."""
    iv = t["iv"]
    return {**t["d"], **{k: iv[k] for k in ("delta", "lo", "hi", "p", "item_only")}}


def load_row_items(rows: list[dict], results_dir: Path) -> dict:
    """Per cell id, its items file (as frame.load_items reads it)."""
    return {i: load_items(results_dir, i) for r in rows for i in r["ids"]}


class Differences:
    """seed_difference(a, b, metric) for the rows of one folder, each pair computed once: the tables and the
    takeaways ask for many of the same pairs, and each is two bootstraps. `priors`: the noise prior the seed
    terms are moderated with."""

    def __init__(self, rows: list[dict], results_dir: Path, priors: prior.Priors | None = None):
        self.items, self.priors, self._found = load_row_items(rows, results_dir), priors, {}

    def __call__(self, a: dict, b: dict, name: str) -> dict:
        key = id(a), id(b), name
        if key not in self._found:
            self._found[key] = seed_difference(self.items, a, b, name, self.priors)
        return self._found[key]


def rank(rows: list[dict], name: str) -> dict[int, int]:
    """id(row) -> rank among `rows` (those with the metric), ties (equal as printed) sharing the better rank."""
    up = describe(name).higher_is_better
    ranked = [r for r in rows if name in r["metrics"]]
    values = pd.Series([shown(r["metrics"][name]["value"], name) for r in ranked], dtype=float)
    return {id(r): int(k) for r, k in zip(ranked, values.rank(ascending=not up, method="min"), strict=True)}


def annotate(rows: list[dict], differences: Differences) -> list[dict]:
    """Adds rank, best (beats some other cell), near_best and vs_base (dicts keyed by metric) to every row."""
    bases = {r["model"]: r for r in rows if r["strategy"] == BASE}
    for r in rows:
        r.update(rank={}, best={}, near_best={}, vs_base={})
    for name in metric_names(rows):
        ranked = [r for r in rows if r["status"] == "ok" and name in r["metrics"]]
        ranks = rank(ranked, name)
        for r in ranked:
            r["rank"][name] = ranks[id(r)]
        best = next((r for r in ranked if r["rank"][name] == 1), None)
        spread = len(set(ranks.values())) > 1
        for r in ranked:
            r["best"][name] = spread and r["rank"][name] == 1
            if r is best:
                r["near_best"][name] = False
                continue
            d = _shown_difference(differences(best, r, name))
            r["near_best"][name] = r["rank"][name] > 1 and not deltas.significant(d)
        for r in rows:
            base = bases.get(r["model"])
            if base is None or r is base or name not in r["metrics"] or name not in base["metrics"]:
                continue
            r["vs_base"][name] = _shown_difference(differences(base, r, name))
    return rows


def summary_frame(rows: list[dict]) -> pd.DataFrame:
    """One flat row per leaderboard row: every usage number and every metric with its interval, rank and delta."""
    flat = []
    for r in rows:
        out = {k: r[k] for k in ("label", "model", "strategy", "status", "reason", "learning_rate", "lr_text",
                                 "lr_centre", "trainable_params", "total_params", "artifact_bytes")}
        out.update(seeds=len(r["seeds"]), seed_list=" ".join(str(s) for s in r["seeds"]), ids=" ".join(r["ids"]),
                   lr_trials=len(r["lr_trials"]))
        out.update({f"usage_{k}": v for k, v in r["usage"].items()})
        timed = r.get("timing") or {}  # harness.timing: wall seconds per phase kind and per eval suite
        out.update({f"seconds_{k}": v for k, v in (timed.get("phases") or {}).items()})
        out.update({f"seconds_eval_{k}": v for k, v in (timed.get("suites") or {}).items()})
        for name, m in r["metrics"].items():
            out.update({name: m["value"], f"{name}_lo": m["lo"], f"{name}_hi": m["hi"], f"{name}_std": m["std"],
                        f"{name}_n": m["n"], f"{name}_ci_method": m["ci_method"], f"{name}_rank": r["rank"].get(name),
                        f"{name}_near_best": r["near_best"].get(name)})
            if d := r["vs_base"].get(name):
                out.update({f"{name}_delta": d["delta"], f"{name}_delta_lo": d["lo"], f"{name}_delta_hi": d["hi"],
                            f"{name}_delta_paired": d["paired"], f"{name}_delta_kind": d["kind"],
                            f"{name}_delta_method": d["method"]})
        flat.append(out)
    return pd.DataFrame(flat)


def format_number(value, fmt: str = "{:,.0f}") -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else fmt.format(value)


def format_value(row: dict, name: str) -> str:
    """`0.938 [0.896, 0.979] #7 ≈`: value and interval (or ± std over seeds), rank, marker; **bold** = best
    (only where some cell is worse)."""
    m = row["metrics"].get(name)
    if m is None:
        return "–"
    fmt = describe(name).fmt
    rank = row["rank"].get(name)
    if m["std"] is not None:
        scale = max(abs(m["value"]), abs(m["std"]))
        text = number(m["value"], fmt, scale)
        text = (f"**{text}**" if row["best"].get(name) else text) + f" ± {number(m['std'], fmt, scale)}"
    else:
        text = format_interval(m["value"], m["lo"], m["hi"], fmt)
        if row["best"].get(name):
            value, _, rest = text.partition(" ")
            text = f"**{value}** {rest}"
    if rank is not None:
        text += f" #{rank}" + (" ≈" if row["near_best"].get(name) else "")
    return text


def format_delta(row: dict, name: str) -> str:
    """`+0.08 [+0.06, +0.09] ✱`: the difference to the base with its interval; ✱ = the interval excludes 0."""
    d = row["vs_base"].get(name)
    if d is None:
        return "–"
    return (format_interval(d["delta"], d["lo"], d["hi"], describe(name).fmt, signed=True)
            + (" ✱" if deltas.significant(d) else "") + ("" if d["paired"] else " (unpaired)"))


def heading(name: str) -> str:
    m = describe(name)
    return f"{m.label} {'↑' if m.higher_is_better else '↓'}"
