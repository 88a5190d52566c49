"""The stability-plasticity trade-off of each trained cell: what it gained on the task against what it forgot,
per point.

A trained cell's points (harness.points) are its checkpoints (the same run at a fraction of the token
budget), its interpolations toward the base (base + a·(tuned - base)) and its end; the base model is
the origin. At every point, against the base model of the same matrix, paired over items
(report.deltas, as the leaderboard's Δ columns):

- task gain: Δ of the primary task metric (table.primary_metric);
- perplexity forgetting: Δ of general-text perplexity, in percent of the base's;
- benchmark forgetting: Δ of each general benchmark accuracy (points).

The operating point is the point with the highest task score whose forgetting stays within the
matrix's limits (eval.tradeoff: perplexity at most +5%, each benchmark at most 1 point down, by
default), judged on the point estimates; its intervals are printed beside it. No point within the
limits (the end forgets too much and so does every blend): the base itself, task gain 0.

    curves = curves_for(rows, results, results_dir)   # {label: [point, ...]}, base first
    lines = section(curves, rows, limits)
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from harness.config import TradeoffSpec
from harness.report import deltas
from harness.report.frame import BASE, load_items
from harness.report.table import format_interval, metric_names, number, primary_metric
from harness.suites import describe

TITLE = "Stability-plasticity: the operating point"
KIND_ORDER = {"base": 0, "interpolate": 1, "checkpoint": 2, "end": 3}


def forgetting_metrics(rows: list[dict]) -> tuple[str | None, list[str]]:
    """(the general perplexity, the general accuracies) among the rows' metrics."""
    names = metric_names(rows)
    ppl = next((n for n in names if describe(n).general and not describe(n).higher_is_better), None)
    return ppl, [n for n in names if describe(n).general and describe(n).higher_is_better]


def limits(results: list[dict]) -> TradeoffSpec:
    """The matrix's eval.tradeoff (the first trained cell's), else the defaults."""
    for r in results:
        ev = r["cell"].get("eval") or {}
        if r["cell"].get("strategy") != BASE and ev.get("tradeoff"):
            return TradeoffSpec(**ev["tradeoff"])
    return TradeoffSpec()


def _point_items(per_seed: list[dict], key: str | None) -> list[dict]:
    """Each seed's items at one point (None: the end), from the cell's items files read once."""
    return [items if key is None else (items.get("_points") or {}).get(key) or {} for items in per_seed]


def _delta(base: dict, base_items: list[dict], metrics: dict, items: list[dict], name: str) -> dict | None:
    if name not in metrics or name not in base["metrics"]:
        return None
    return deltas.difference(base["metrics"][name], metrics[name], deltas.seed_scores(base_items, name),
                             deltas.seed_scores(items, name))


def _relative(d: dict | None, base_value: float) -> dict | None:
    if d is None or not base_value:
        return None
    return {**d, "delta": 100 * d["delta"] / base_value, "lo": 100 * d["lo"] / base_value,
            "hi": 100 * d["hi"] / base_value}


def measure(base: dict, base_items: list[dict], metrics: dict, items: list[dict], quality: str, ppl: str | None,
            accs: list[str]) -> dict:
    """{"task", "ppl_pct", "bench": {name: Δ}} of one point against the base (None where not measured)."""
    return {"task": _delta(base, base_items, metrics, items, quality),
            "ppl_pct": _relative(_delta(base, base_items, metrics, items, ppl), base["metrics"][ppl]["value"])
            if ppl and ppl in base["metrics"] else None,
            "bench": {n: d for n in accs if (d := _delta(base, base_items, metrics, items, n)) is not None}}


def within(point: dict, spec: TradeoffSpec) -> bool:
    """Forgetting within the limits, on the point estimates (a limit whose metric was not measured holds)."""
    ppl_ok = point["ppl_pct"] is None or point["ppl_pct"]["delta"] <= 100 * spec.general_ppl_increase
    return ppl_ok and all(d["delta"] >= -spec.benchmark_drop for d in point["bench"].values())


def curves_for(rows: list[dict], results_dir: Path) -> dict[str, list[dict]]:
    """Per trained ok cell with points: its points (base, interpolations by a, checkpoints by fraction, end)."""
    quality = primary_metric(metric_names(rows))
    ppl, accs = forgetting_metrics(rows)
    bases = {r["model"]: r for r in rows if r["strategy"] == BASE}
    curves = {}
    for r in rows:
        base = bases.get(r["model"])
        if r["status"] != "ok" or r is base or base is None or not r.get("points") or quality is None:
            continue
        base_items = [load_items(results_dir, i) for i in base["ids"]]
        cell_items = [load_items(results_dir, i) for i in r["ids"]]
        zero = {"task": {"delta": 0.0, "lo": 0.0, "hi": 0.0}, "ppl_pct": {"delta": 0.0, "lo": 0.0, "hi": 0.0}
                if ppl else None, "bench": {n: {"delta": 0.0, "lo": 0.0, "hi": 0.0} for n in accs}}
        end = {"metrics": r["metrics"]}  # each point's task score against the end's, paired over the same items
        points = [{"key": "base", "kind": "base", "at": 0.0, **zero,
                   "vs_end": _delta(end, cell_items, base["metrics"], base_items, quality)}]
        for p in r["points"]:
            if p.get("reason") or not p["metrics"]:
                continue
            items = _point_items(cell_items, p["key"])
            points.append({"key": p["key"], "kind": p["kind"], "at": p["at"], "tokens": p.get("tokens"),
                           **measure(base, base_items, p["metrics"], items, quality, ppl, accs),
                           "vs_end": _delta(end, cell_items, p["metrics"], items, quality)})
        points.append({"key": "end", "kind": "end", "at": 1.0, "tokens": (r.get("usage") or {}).get("tokens"),
                       **measure(base, base_items, r["metrics"], cell_items, quality, ppl, accs), "vs_end": None})
        points = like_with_like([p for p in points if p["task"] is not None])
        curves[r["label"]] = sorted(points, key=lambda p: (KIND_ORDER[p["kind"]], p["at"]))
    return curves


def like_with_like(points: list[dict]) -> list[dict]:
    """The points with only the benchmarks every point but the base measured: when eval.point_suites leaves the
    benchmarks out, the end's benchmark scores must not make the end fail a limit no other point is held to."""
    common = set.intersection(*(set(p["bench"]) for p in points[1:])) if len(points) > 1 else set()
    return [{**p, "bench": {n: d for n, d in p["bench"].items() if n in common}} for p in points]


def operating_point(points: list[dict], spec: TradeoffSpec, higher_is_better: bool = True) -> dict:
    """The point with the best task score within the limits (the base when none is); ties: the earliest."""
    sign = 1 if higher_is_better else -1
    return max((p for p in points if within(p, spec)), key=lambda p: sign * p["task"]["delta"], default=points[0])


def mean_bench(p: dict) -> float | None:
    """The mean Δ of the general benchmark accuracies at a point (None without any)."""
    return sum(d["delta"] for d in p["bench"].values()) / len(p["bench"]) if p["bench"] else None


def _fmt(d: dict | None, fmt: str) -> str:
    return "–" if d is None else format_interval(d["delta"], d["lo"], d["hi"], fmt, signed=True)


def _point_name(p: dict) -> str:
    return {"base": "base", "end": "end", "checkpoint": f"checkpoint {p['at']:g}",
            "interpolate": f"a={p['at']:g}"}[p["kind"]]


def tables(curves: dict[str, list[dict]], rows: list[dict], spec: TradeoffSpec) -> tuple[str, pd.DataFrame,
                                                                                          pd.DataFrame] | None:
    """The section's rule, its summary (one row per cell) and every point, for the markdown and the page."""
    if not curves:
        return None
    quality = primary_metric(metric_names(rows))
    ppl, accs = forgetting_metrics(rows)
    qfmt = describe(quality).fmt
    summary, detail = [], []
    accs = [n for n in accs if any(n in p["bench"] for ps in curves.values() for p in ps)]  # judged somewhere
    for label, points in curves.items():
        op, end = operating_point(points, spec, describe(quality).higher_is_better), points[-1]
        summary.append({
            "cell": label, "operating point": _point_name(op),
            "task Δ there": _fmt(op["task"], qfmt),
            "general PPL Δ% there": _fmt(op["ppl_pct"], "{:.1f}"),
            "benchmark Δ there (mean)": number(mean_bench(op), "{:.3f}", signed=True) if op["bench"] else "–",
            "task Δ at the end": _fmt(end["task"], qfmt),
            "there − end": _fmt(op.get("vs_end"), qfmt),
            "end within limits": "yes" if within(end, spec) else "no",
            "points": len(points) - 1})
        for p in points[1:]:
            detail.append({"cell": label, "point": _point_name(p),
                           "tokens": f"{p['tokens']:,.0f}" if p.get("tokens") else "–",
                           f"task Δ {describe(quality).label}": _fmt(p["task"], qfmt),
                           **({"general PPL Δ%": _fmt(p["ppl_pct"], "{:.1f}")} if ppl else {}),
                           **{f"Δ {describe(n).label}": _fmt(p["bench"].get(n), describe(n).fmt) for n in accs},
                           "within": "✓" if within(p, spec) else "✗"})
    rule = (f"Per trained cell: its checkpoints (the same training run at a fraction of the token budget), its "
            f"interpolations toward the base model (a = weight of the tuned model: base + a·(tuned − base)) and its "
            f"end, each scored on the point suites and compared with the base model item by item (paired 95% "
            f"intervals). The **operating point** is the point with the highest task gain ({describe(quality).label}) "
            f"whose forgetting stays within the limits: general-text perplexity at most "
            f"+{100 * spec.general_ppl_increase:g}% and every general benchmark accuracy at most "
            f"{spec.benchmark_drop:g} below the base (point estimates; `eval.tradeoff` sets them), on the measures "
            f"every point of the cell has (a benchmark left out of `eval.point_suites` judges no point, the end "
            f"included; its end scores are in the tables above). A cell with no "
            f"point within the limits operates at the base (Δ 0). An operating point other than the end means the "
            f"full run overshot: an earlier checkpoint, or a blend toward the base, does better within the limits. "
            f"*there − end* is the operating point's task score minus the end's, paired over the same items: where "
            f"its interval excludes 0, the operating point scores differently on the task, not only forgets less.")
    return rule, pd.DataFrame(summary), pd.DataFrame(detail)


def section(curves: dict[str, list[dict]], rows: list[dict], spec: TradeoffSpec,
            reasons: dict[str, str] | None = None) -> list[str]:
    """The leaderboard's stability-plasticity section: one summary row per cell, then every point."""
    if (made := tables(curves, rows, spec)) is None:
        return []
    rule, summary, detail = made
    lines = [f"## {TITLE}", "", rule, "", summary.to_markdown(index=False, disable_numparse=True), ""]
    if reasons:
        lines += [f"- `{label}`: not interpolated: {why}" for label, why in reasons.items()] + [""]
    lines += ["### Every point", "", detail.to_markdown(index=False, disable_numparse=True), ""]
    return lines


def not_interpolated(rows: list[dict]) -> dict[str, str]:
    """Per cell, why its interpolation points were not measured (a strategy without an identity start)."""
    return {r["label"]: reason for r in rows for p in r.get("points") or [] if (reason := p.get("reason"))}
