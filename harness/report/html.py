"""report.html: one self-contained page per results folder (and per gate run), no server and no network.

Jinja2 renders the page from templates/; every script and style is inlined, so the file opens
from file:// on an air-gapped machine. Charts are plotly.js from plotly.py's own offline bundle.
That bundle is 4.8 MB, so it is stored gzip-compressed (base64, about 1.9 MB) and unpacked by the
browser's DecompressionStream: the smoke page stays well under 5 MB. The tables need only sorting
by a number behind formatted text ("0.896 [0.833, 0.948] #6") and a text filter over a few dozen
rows, which a 40-line script does; a table library would add its own cell rendering on top of
the markdown leaderboard's strings, which are the ones this page must show.

    page = leaderboard_page(results, rows, results_dir, title, header, tables, hygiene, rules)
    compare_page(report)   # the gate's verdict as HTML
"""

from __future__ import annotations

import base64
import functools
import gzip
import html
import json
import re
from pathlib import Path

import pandas as pd
from jinja2 import Environment, FileSystemLoader, select_autoescape

from harness.report import charts, evidence, rates
from harness.report.frame import BASE, load_items
from harness.report.headline import headline
from harness.suites import describe

TEMPLATES = Path(__file__).resolve().parent / "templates"
SHOWN_PER_LIST = 200  # flipped items listed per metric and direction; the count above says how many there are


@functools.cache
def plotly_bundle() -> str:
    """plotly.min.js from the installed plotly package, gzip-compressed and base64-encoded."""
    from plotly.offline import get_plotlyjs

    return base64.b64encode(gzip.compress(get_plotlyjs().encode("utf-8"), compresslevel=9, mtime=0)).decode("ascii")


def inline_md(text) -> str:
    """The markdown tables' marks as HTML: **bold** and `code`; everything else escaped."""
    out = html.escape("" if text is None else str(text))
    out = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", out)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", out)


def _json_script(data) -> str:
    """JSON safe inside <script type="application/json">: no '</script>' can end it early."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).replace("<", "\\u003c")


@functools.cache
def _env() -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html", "j2"]),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["md"] = inline_md
    env.filters["pretty"] = lambda v: json.dumps(v, indent=1, ensure_ascii=False, default=str)
    env.filters["num"] = _number
    return env


def _number(value) -> str:
    """Usage numbers as people read them: integers with thousands separators, others to 4 significant figures."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if float(value).is_integer() and abs(value) < 1e15:
        return f"{int(value):,}"
    return f"{value:,.4g}" if abs(value) < 1e6 else f"{value:.3e}"


def _sort_key(value) -> str:
    if isinstance(value, (int, float)) and value == value:
        return repr(float(value))
    return "" if value is None or isinstance(value, float) else str(value)


def frame_table(text: pd.DataFrame, values: pd.DataFrame | None = None, classes: list[str] | None = None) -> dict:
    """A DataFrame as {"columns", "rows": [[(html, sort key), ...]], "classes"}; sort keys from `values` if given."""
    rows = []
    for i in range(len(text)):
        rows.append([(inline_md(text.iat[i, j]),
                      _sort_key(values.iat[i, j]) if values is not None else _sort_key(text.iat[i, j]))
                     for j in range(text.shape[1])])
    return {"columns": list(text.columns), "rows": rows, "classes": classes or [""] * len(rows)}


def _config(result: dict) -> str:
    cell = result["cell"]
    params = ", ".join(f"{k}={v}" for k, v in (cell.get("params") or {}).items() if v not in (None, {}, []))
    lr = rates.trained_rate(result)
    return f"{cell['strategy']}" + (f" ({params})" if params else "") + (f", lr {lr:g}" if lr else "")


def cell_evidence(ref: dict, ref_items: dict, cell_items: dict, texts: dict, missing: dict) -> list[dict]:
    """Per binary metric: the flipped items against `ref`, each with its text's index where texts are known.

    A row over several seeds is shown by its first seed: a flip is a property of one model's answers.
    """
    out = []
    for metric in evidence.binary_metrics(ref_items):
        f = evidence.flips(ref_items, cell_items, metric)
        if f is None:
            continue
        key = evidence.source(ref["cell"], metric)
        shown = texts.get(key)
        why = missing.get(key)
        if shown is not None and len(shown) != len(ref_items[metric]):
            why, shown = (f"the data now has {len(shown)} items, the cell scored {len(ref_items[metric])} "
                          "(changed data or drop_contaminated)"), None
        out.append({**f, "label": describe(metric).label, "source": key if shown is not None else None,
                    "why": why, "lost": f["lost"][:SHOWN_PER_LIST], "gained": f["gained"][:SHOWN_PER_LIST],
                    "n_lost": len(f["lost"]), "n_gained": len(f["gained"])})
    return out


def _loss_curve(result: dict) -> dict:
    """The logged training losses against the optimizer step (train.py logs every max(1, steps // 25) steps)."""
    usage = result.get("usage") or {}
    losses = usage.get("loss_curve") or []
    every = max(1, int(usage.get("steps") or len(losses)) // 25)
    return {"seed": result["cell"].get("seed"), "x": [every * (i + 1) for i in range(len(losses))], "y": losses}


def _sanity(result: dict, items: dict) -> dict:
    return {**(result.get("sanity") or {}), **({"batch_invariance": items["_sanity_batch_invariance"]}
                                               if "_sanity_batch_invariance" in items else {})}


def _seconds(row: dict) -> dict:
    """The cell's wall seconds per phase and per eval suite (harness.timing), for its Usage table."""
    timed = row.get("timing") or {}
    return {**{f"{k} s": v for k, v in (timed.get("phases") or {}).items()},
            **{f"eval {k} s": v for k, v in (timed.get("suites") or {}).items()}}


def leaderboard_page(results: list[dict], rows: list[dict], results_dir: Path, title: str, header: list[str],
                     tables: dict[str, pd.DataFrame], hygiene: str | None, rules: str,
                     sections: list[dict] | None = None, curves: dict | None = None, spec=None) -> str:
    by_id = {r["id"]: r for r in results}
    items = {i: load_items(results_dir, i) for r in rows for i in r["ids"]}
    first = [by_id[r["ids"][0]] if r["ids"] else None for r in rows]
    configs = [_config(f) if f else r["label"] for r, f in zip(rows, first, strict=True)]
    bases = {r["model"]: i for i, r in enumerate(rows) if r["strategy"] == BASE and r["ids"]}
    texts, missing = {}, {}
    for i in bases.values():
        base_items = items[rows[i]["ids"][0]]
        t, m = evidence.item_texts(first[i], evidence.binary_metrics(base_items))
        texts.update(t)
        missing.update(m)
    cells = []
    for i, (r, res) in enumerate(zip(rows, first, strict=True)):
        b = bases.get(r["model"])
        ev = []
        if res is not None and b is not None and b != i and r["ids"]:
            ev = cell_evidence(first[b], items[rows[b]["ids"][0]], items[r["ids"][0]], texts, missing)
        seeds = [by_id[k] for k in r["ids"]]
        cells.append({"label": r["label"], "status": r["status"], "evidence": ev,
                      "loss": [_loss_curve(s) for s in seeds]})
    h = headline(rows)
    details = [{"row": r, "results": [by_id[k] for k in r["ids"]] or [], "config": configs[i],
                "sanity": [_sanity(by_id[k], items[k]) for k in r["ids"]],
                "usage": {**{k: v for k, v in r["usage"].items() if v is not None}, **_seconds(r)}}
               for i, r in enumerate(rows)]
    failed = [r for r in results if r["id"] not in {k for row in rows for k in row["ids"]}]
    top = frame_table(h.text, h.values, [f"status-{r['status']}" for r in rows])
    return _env().get_template("leaderboard.html.j2").render(
        title=title, header=header, rules=rules, headline=top, roles=h.metrics,
        tables={name: frame_table(df) for name, df in tables.items() if not df.empty}, details=details,
        unmeasured=failed, hygiene=hygiene, plotly=plotly_bundle(),
        sections=[{**s, "tables": {n: frame_table(df) for n, df in s["tables"].items() if not df.empty}}
                  for s in sections or []],
        data=_json_script({"cells": cells, "texts": texts, "figures": charts.figures(rows, configs, curves, spec)}))


def compare_page(report) -> str:
    """The gate's verdict: counts, every paired delta with its CI, and the items behind each regression."""
    from harness.report.compare import ORDER
    from harness.report.frame import load_results

    rows = sorted(report.rows, key=lambda r: ORDER.index(r["verdict"]))
    verdicts = [f"verdict-{r['verdict'].split(',')[0]}" for r in rows]  # "worse, within tolerance" -> worse
    table = frame_table(pd.DataFrame(rows), classes=verdicts) if rows else None
    regressions = []
    base = {r["id"]: r for r in load_results(report.baseline)}
    for label, (a_id, b_id) in report.pairs.items():
        bad = [r["metric"] for r in rows if r["cell"] == label and r["verdict"] == "regressed"]
        if not bad:
            continue
        a_items, b_items = load_items(report.baseline, a_id), load_items(report.candidate, b_id)
        texts, missing = evidence.item_texts(base[a_id], bad)
        ev = [e for e in cell_evidence(base[a_id], a_items, b_items, texts, missing) if e["metric"] in bad]
        for e in ev:
            for entry in e["lost"]:
                t = texts.get(e["source"]) if e["source"] else None
                entry.update(t[entry["pos"]] if t else {})
        shown = {e["metric"] for e in ev}
        regressions.append({"cell": label, "metrics": bad, "evidence": ev,
                            "not_per_item": [m for m in bad if m not in shown and m != "(status)"]})
    counts = {v: sum(r["verdict"] == v for r in rows) for v in ORDER}
    return _env().get_template("compare.html.j2").render(
        report=report, table=table, counts=counts, regressions=regressions)
