"""A results folder's LEADERBOARD.md, summary.csv/.json and plots: the base model first, every number measured.

Tables are pandas DataFrames rendered with `to_markdown` (tabulate); the numbers come from
frame.py (rows, seeds collapsed) and table.py (ranks, indistinguishable-from-best, deltas).

    write_leaderboard(Path("results/smoke"))   # -> results/smoke/LEADERBOARD.md
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pandas as pd

from harness.report import plots
from harness.report.frame import BASE, load_results, summarize
from harness.report.headline import headline
from harness.report.table import annotate, is_side_effect, metric_names, ordered, primary_metric, summary_frame
from harness.report.table import format_delta as _delta
from harness.report.table import format_number as _num
from harness.report.table import format_value as _value
from harness.report.table import heading as _heading


def _esc(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _lr(row: dict) -> str:
    if row["strategy"] == BASE:  # nothing was trained
        return "–"
    lr = _num(row["learning_rate"], "{:g}")
    return f"{lr} ({len(row['lr_trials'])} tried)" if row["lr_trials"] else lr


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
    if hygiene := data_hygiene(results_dir):
        lines.append(f"- **Data hygiene:** {hygiene}")
    return lines


def lr_section(rows: list[dict]) -> list[str]:
    tuned = [r for r in rows if r["lr_trials"]]
    if not tuned:
        return []
    recs = []
    for r in tuned:
        shown = [f"{_num(t.get('learning_rate'), '{:g}')} → {_num(t.get('val_loss'), '{:.3f}')}"
                 for t in r["lr_trials"]]
        trials = ", ".join(f"**{s}**" if t.get("chosen") else s for s, t in zip(shown, r["lr_trials"]))
        recs.append({"cell": _esc(r["label"]), "learning rate → validation loss (chosen in bold)": trials,
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
    top = headline(rows).text.map(_esc)
    parts = header(results, results_dir, title) + ["", "## Headline", "", top.to_markdown(index=False), "", RULES, ""]
    for section, table in wide_tables(rows).items():
        if not table.empty:
            parts += [f"## {section}", "", table.to_markdown(index=False), ""]
    if figures:
        parts += ["## Plots", ""] + [f"![{f.stem}]({f.name})" for f in figures] + [""]
    parts += lr_section(rows)
    notes = [r for r in rows if r["reason"]]
    if notes:
        parts += ["## Cells that did not finish normally", ""]
        parts += [f"- `{_esc(r['label'])}` ({r['status']}): {_esc(r['reason'])}" for r in notes] + [""]
    return "\n".join(parts)


def wide_tables(rows: list[dict]) -> dict[str, pd.DataFrame]:
    """The markdown's tables below the headline, by section title."""
    names = metric_names(rows)
    quality = [n for n in names if not is_side_effect(n)]
    side = [n for n in names if is_side_effect(n)]
    delta_names = [n for n in [primary_metric(names)] if n] + side
    return {"Task quality and cost": main_table(rows, quality),
            "Forgetting and safety": side_effect_table(rows, side) if side else pd.DataFrame(),
            "Change against the base model": (delta_table(rows, delta_names)
                                              if any(r["vs_base"] for r in rows) and delta_names else pd.DataFrame())}


def report_page(results: list[dict], rows: list[dict], results_dir: Path, title: str) -> str:
    """report.html's content: the same header, headline and tables as the markdown, plus charts and evidence."""
    from harness.report.html import leaderboard_page

    lines = header(results, results_dir, title)[2:]  # without the title and its blank line
    return leaderboard_page(results, rows, results_dir, title, [h.removeprefix("- ") for h in lines],
                            wide_tables(rows), data_hygiene(results_dir), RULES)


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
    (results_dir / "report.html").write_text(report_page(results, rows, results_dir, title or results_dir.name),
                                             encoding="utf-8")
    return out
