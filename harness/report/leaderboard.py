"""A results folder's LEADERBOARD.md, summary.csv/.json and plots: the base model first, every number measured.

Tables are pandas DataFrames rendered with `to_markdown` (tabulate); the numbers come from
frame.py (rows, seeds collapsed) and table.py (ranks, indistinguishable-from-best, deltas).

    write_leaderboard(Path("results/smoke"))   # -> results/smoke/LEADERBOARD.md
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import pandas as pd

from harness import env as env_info
from harness.evals.metrics import describe
from harness.report import deltas, plots
from harness.report.frame import BASE, load_results, summarize
from harness.report.table import annotate, is_side_effect, metric_names, ordered, primary_metric, summary_frame


def _num(value, fmt: str = "{:,.0f}") -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else fmt.format(value)


def _signed(fmt: str) -> str:
    return fmt.replace("{:", "{:+", 1)


def _esc(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _value(row: dict, name: str) -> str:
    """`0.938 [0.896, 0.979] #7 ≈`: value and interval (or ± std over seeds), rank, marker."""
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


def _delta(row: dict, name: str) -> str:
    d = row["vs_base"].get(name)
    if d is None:
        return "–"
    f = describe(name).fmt
    return (f"{_signed(f).format(d['delta'])} [{_signed(f).format(d['lo'])}, {_signed(f).format(d['hi'])}]"
            + (" ✱" if deltas.significant(d) else "") + ("" if d["paired"] else " (unpaired)"))


def _heading(name: str) -> str:
    m = describe(name)
    return f"{m.label} {'↑' if m.higher_is_better else '↓'}"


def _lr(row: dict) -> str:
    if row["strategy"] == BASE:  # nothing was trained
        return "–"
    lr = _num(row["learning_rate"], "{:g}")
    if not row["lr_trials"]:
        return f"{lr} (set)"
    objective = row["lr_trials"][0].get("objective", "loss")
    return f"{lr} (best {objective.replace('_', ' ')} of {len(row['lr_trials'])})"


def _status(row: dict) -> str:
    return "ok" if row["status"] == "ok" else f"**{row['status']}**"


def cost_columns(rows: list[dict]) -> list[tuple[str, str, str]]:
    """(usage key, heading, format) for the cost part of the main table; optional ones only when measured."""
    cols = [("tokens", "train tokens", "{:,.0f}"), ("tuning_tokens", "tuning tokens", "{:,.0f}"),
            ("seconds", "train s", "{:,.1f}"), ("peak_memory_mb", "peak MB", "{:,.0f}"),
            ("flops", "train FLOPs", "{:.2e}")]
    return [c for c in cols if c[0] in ("tokens", "seconds", "peak_memory_mb")
            or any(r["usage"].get(c[0]) is not None for r in rows)]


def main_table(rows: list[dict], names: list[str]) -> pd.DataFrame:
    multi_seed = any(len(r["seeds"]) > 1 for r in rows)
    out = []
    for r in rows:
        rec = {"cell": _esc(r["label"]), "status": _status(r)}
        if multi_seed:
            rec["seeds"] = len(r["seeds"])
        rec["lr"] = _lr(r)
        rec["trainable params"] = _num(r["trainable_params"])
        rec.update({head: _num(r["usage"].get(key), fmt) for key, head, fmt in cost_columns(rows)})
        rec.update({_heading(n): _value(r, n) for n in names})
        out.append(rec)
    return pd.DataFrame(out)


def side_effect_table(rows: list[dict], names: list[str]) -> pd.DataFrame:
    return pd.DataFrame([{"cell": _esc(r["label"]), **{_heading(n): _value(r, n) for n in names}} for r in rows])


def delta_table(rows: list[dict], names: list[str]) -> pd.DataFrame:
    shown = [r for r in rows if r["vs_base"]]
    return pd.DataFrame([{"cell": _esc(r["label"]), **{f"Δ {_heading(n)}": _delta(r, n) for n in names}}
                         for r in shown])


def _unique(values) -> list:
    return list(dict.fromkeys(json.dumps(v, sort_keys=True) if isinstance(v, dict) else v for v in values))


def _budget(budget: dict) -> str:
    caps = [f"{budget['max_seconds']:g} s" if budget.get("max_seconds") else None,
            f"{budget['max_memory_mb']:,.0f} MB" if budget.get("max_memory_mb") else None]
    caps = [c for c in caps if c]
    return f"{budget.get('tokens', 0):,} training tokens per cell" + (f", capped at {' and '.join(caps)}" if caps
                                                                       else ", no time or memory cap")


def data_hygiene(results_dir: Path) -> str | None:
    """The data layer's one-line summary of data_report.json (rows kept and dropped, contamination per eval set)."""
    path = Path(results_dir) / "data_report.json"
    if not path.is_file():
        return None
    try:
        report = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as e:
        return f"data_report.json unreadable ({e})"
    summary = report.get("summary") if isinstance(report, dict) else None
    return f"{summary} (details: data_report.json)" if summary else "data_report.json has no summary line"


def header(results: list[dict], results_dir: Path, title: str) -> list[str]:
    cells = [r["cell"] for r in results]
    env = next((r["env"] for r in results if r.get("env")), {})
    models = ", ".join(f"`{m}`" for m in _unique(c.get("model", {}).get("id") for c in cells))
    data = ", ".join(f"`{d['path']}` (max {d.get('max_length', '?')} tokens)"
                     for d in map(json.loads, _unique(c.get("data") or {} for c in cells)) if d)
    budgets = "; ".join(_budget(json.loads(b)) for b in _unique(c.get("budget") or {} for c in cells))
    seeds = ", ".join(str(s) for s in sorted(set(c.get("seed", 0) for c in cells)))
    suites = ", ".join(_unique(s for c in cells for s in (c.get("eval") or {}).get("suites", [])))
    packages = ", ".join(f"{k} {v}" for k, v in (env.get("packages") or {}).items() if v)
    git = env.get("git") or {}
    statuses = ", ".join(f"{n} {s}" for s, n in Counter(r["status"] for r in results).items())
    lines = [f"# Leaderboard: {title}", "",
             f"- **Base model:** {models}",
             f"- **Data:** {data}",
             f"- **Budget:** {budgets}",
             f"- **Seeds:** {seeds} · **suites:** {suites}",
             f"- **Hardware:** {env.get('device', '?')} · {env.get('platform', '?')}",
             f"- **Versions:** python {env.get('python', '?')}, {packages}"
             + (f" · git `{git['sha'][:10]}`{' (uncommitted changes)' if git.get('dirty') else ''}"
                if git.get("sha") else ""),
             f"- **Cells:** {len(results)} ({statuses})"]
    versions = _unique(json.dumps(r["env"].get("packages") or {}, sort_keys=True) for r in results if r.get("env"))
    if off := _unique(d for v in versions for d in env_info.drift(json.loads(v), env_info.pinned())):
        lines.append(f"- **⚠ Not the pinned versions:** measured with {', '.join(off)}; `pip install -c "
                     f"constraints.txt -e .` installs the pinned ones, and a re-run there may give other numbers")
    if hygiene := data_hygiene(results_dir):
        lines.append(f"- **Data hygiene:** {hygiene}")
    return lines


def lr_section(rows: list[dict]) -> list[str]:
    tuned = [r for r in rows if r["lr_trials"]]
    if not tuned:
        return []
    recs = []
    for r in tuned:
        shown = [f"{_num(t.get('learning_rate'), '{:g}')} → {_num(t.get('tuning_loss', t.get('val_loss')), '{:.3f}')}"
                 + (f" (PPL {_num(t['general_ppl'], '{:.2f}')})" if t.get("general_ppl") is not None else "")
                 for t in r["lr_trials"]]
        trials = ", ".join(f"**{s}**" if t.get("chosen") else s for s, t in zip(shown, r["lr_trials"]))
        recs.append({"cell": _esc(r["label"]), "learning rate → tuning-split loss (chosen in bold)": trials,
                     "objective": r["lr_trials"][0].get("objective", "loss").replace("_", " "),
                     "tuning tokens": _num(r["usage"].get("tuning_tokens"))})
    return ["## Learning-rate search", "", pd.DataFrame(recs).to_markdown(index=False), ""]


RULES = (
    "How to read this: a metric cell is the value and its 95% bootstrap interval over items (rows over several "
    "seeds: mean ± std over seeds); **bold** = best, `#k` = rank among cells with status ok, `≈` = "
    "indistinguishable from the best (the 95% interval of the difference to the best cell includes 0). "
    "Differences are paired over items when both cells scored the same items (paired bootstrap; perplexity "
    "resamples documents), otherwise taken from the two intervals (half-widths added in quadrature, marked "
    "unpaired). Δ = cell minus the base model of the same matrix; ✱ = its interval excludes 0. "
    "↑ higher is better, ↓ lower is better. Every metric, interval, rank and delta is also in summary.csv / "
    "summary.json; full records in cells/<id>.json."
)


def markdown(results: list[dict], rows: list[dict], results_dir: Path, title: str, figures: list[Path]) -> str:
    names = metric_names(rows)
    quality = [n for n in names if not is_side_effect(n)]
    side = [n for n in names if is_side_effect(n)]
    parts = header(results, results_dir, title) + ["", RULES, "",
                                                   "## Task quality and cost", "",
                                                   main_table(rows, quality).to_markdown(index=False), ""]
    if side:
        parts += ["## Forgetting and safety", "", side_effect_table(rows, side).to_markdown(index=False), ""]
    delta_names = [n for n in [primary_metric(names)] if n] + side
    if any(r["vs_base"] for r in rows) and delta_names:
        parts += ["## Change against the base model", "",
                  delta_table(rows, delta_names).to_markdown(index=False), ""]
    if figures:
        parts += ["## Plots", ""] + [f"![{f.stem}]({f.name})" for f in figures] + [""]
    parts += lr_section(rows)
    notes = [r for r in rows if r["reason"]]
    if notes:
        parts += ["## Cells that did not finish normally", ""]
        parts += [f"- `{_esc(r['label'])}` ({r['status']}): {_esc(r['reason'])}" for r in notes] + [""]
    return "\n".join(parts)


def write_leaderboard(results_dir: Path, title: str | None = None, plot: bool = True) -> Path:
    """LEADERBOARD.md, summary.csv, summary.json and the plots, all inside `results_dir`."""
    results_dir = Path(results_dir)
    results = load_results(results_dir)
    rows = ordered(annotate(summarize(results), results_dir))
    figures = plots.write_plots(rows, results_dir) if plot else []
    summary_frame(rows).to_csv(results_dir / "summary.csv", index=False)
    (results_dir / "summary.json").write_text(json.dumps({"title": title or results_dir.name, "rows": rows},
                                                         indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    out = results_dir / "LEADERBOARD.md"
    out.write_text(markdown(results, rows, results_dir, title or results_dir.name, figures), encoding="utf-8")
    return out
