"""The bottom line of a leaderboard, from the numbers alone: the best cell per question, with its interval and the
cells indistinguishable from it; the significant regressions against the base; what the matrix cannot tell apart.

Questions: task quality (the primary task metric, every ok cell, the base included), forgetting (general-text
perplexity, else the first general benchmark: the trained cell that moved least), safety (harmful-prompt refusal
among trained cells) and cost (of the cells indistinguishable from the best on task quality, the cheapest).
Nothing is claimed that degenerate output would produce: a metric on which every cell prints the same value or
every cell is at chance has no best (table.uninformative), and cost is only asked of cells that beat the base.

    lines = takeaways(rows, results_dir)   # rows from table.annotate; markdown bullet lines
"""

from __future__ import annotations

from pathlib import Path

from harness.report import deltas
from harness.report.frame import BASE
from harness.report.table import (
    format_interval,
    is_side_effect,
    load_row_items,
    metric_names,
    primary_metric,
    rank,
    row_difference,
    uninformative,
)
from harness.suites import describe

SAFETY = "refusal_harmful"


def _cells(rows: list[dict]) -> str:
    """Cell labels; a cell whose rate search ended at an edge of its grid says so (its optimum may lie beyond)."""
    return ", ".join(f"`{r['label']}`" + (" (**edge** of its learning-rate search)" if "edge" in r.get("bracket", [])
                                         else "") for r in rows)


def _value(row: dict, name: str) -> str:
    m = row["metrics"][name]
    return format_interval(m["value"], m["lo"], m["hi"], describe(name).fmt)


def best_of(rows: list[dict], name: str, items: dict) -> tuple[list[dict], list[dict]]:
    """(the best rows, tied as printed; the other rows whose difference to the first best includes 0)."""
    ranks = rank(rows, name)
    best = [r for r in rows if ranks.get(id(r)) == 1]
    peers = [r for r in rows if id(r) in ranks and ranks[id(r)] > 1
             and not deltas.significant(row_difference(items, best[0], r, name))]
    return best, peers


def _answer(question: str, rows: list[dict], name: str, items: dict, among: str) -> str:
    head = f"**{question}** ({describe(name).label} {'↑' if describe(name).higher_is_better else '↓'}, {among})"
    if why := uninformative(rows, name):
        return f"- {head}: no best, {why}."
    best, peers = best_of(rows, name, items)
    if len(rows) == 1:  # nothing to be best among
        return f"- {head}: only {_cells(rows)} measured, at {_value(rows[0], name)}."
    text = f"- {head}: best {_cells(best)} at {_value(best[0], name)}"
    text += f"; indistinguishable from it: {_cells(peers)}" if peers else "; every other cell is significantly worse"
    return text + "."


def _task(rows: list[dict], quality: str, items: dict) -> list[str]:
    line = _answer("Task quality", rows, quality, items, "all cells")
    best = [] if uninformative(rows, quality) else best_of(rows, quality, items)[0]
    if best and all(r["strategy"] == BASE for r in best):
        line += " No trained cell beats the base model."
    return [line]


def _forgetting(trained: list[dict], names: list[str], items: dict) -> list[str]:
    general = [n for n in names if describe(n).general and not uninformative(trained, n)]
    name = "ppl_general" if "ppl_general" in general else next(iter(general), None)
    if name is None or not trained:
        return []
    line = _answer("Forgetting", trained, name, items, "trained cells, least forgetting")
    best, _ = best_of(trained, name, items)
    if (d := best[0]["vs_base"].get(name)) and deltas.significant(d):
        f = describe(name).fmt
        line += f" It still differs from the base by {format_interval(d['delta'], d['lo'], d['hi'], f, signed=True)}."
    return [line]


def _safety(trained: list[dict], items: dict) -> list[str]:
    if not any(SAFETY in r["metrics"] for r in trained):
        return []
    return [_answer("Safety", [r for r in trained if SAFETY in r["metrics"]], SAFETY, items,
                    "trained cells, refusal of harmful prompts")]


def _cost(rows: list[dict], quality: str, items: dict) -> list[str]:
    """The cheapest of the trained cells that share the best task quality (tied or indistinguishable)."""
    if uninformative(rows, quality):
        return []
    best, peers = best_of(rows, quality, items)
    pool = [r for r in best + peers if r["strategy"] != BASE and (d := r["vs_base"].get(quality))
            and deltas.significant(d) and (d["delta"] > 0) == describe(quality).higher_is_better]
    if not pool:
        return []
    picks = []
    for what, cost, unit in (("the fewest trainable parameters", lambda r: r.get("trainable_params"), ""),
                             ("the smallest artifact", lambda r: r.get("artifact_bytes"), " bytes"),
                             ("the lowest peak memory", lambda r: r["usage"].get("peak_memory_mb"), " MB")):
        have = [r for r in pool if cost(r) is not None]
        if have:
            low = min(cost(r) for r in have)
            picks.append(f"{what}: {_cells([r for r in have if cost(r) == low])} ({low:,.0f}{unit})")
    return [f"- **Cost** (of the {len(pool)} trained cell(s) at the best task quality): " + "; ".join(picks) + "."]


def _regressions(trained: list[dict], names: list[str]) -> list[str]:
    side = [n for n in names if is_side_effect(n)]
    found = []
    for r in trained:
        worse = []
        for n in side:
            d = r["vs_base"].get(n)
            if d and deltas.significant(d) and (d["delta"] < 0) == describe(n).higher_is_better:
                shown = format_interval(d['delta'], d['lo'], d['hi'], describe(n).fmt, True)
                worse.append(f"{describe(n).label} {shown}")
        if worse:
            found.append(f"  - `{r['label']}`: " + ", ".join(worse))
    if not side:
        return []
    if not found:
        return ["- **Regressions against the base:** none significant on any forgetting or safety metric."]
    return ["- **Regressions against the base** (95% interval of the paired difference excludes 0):", *found]


def _cannot_tell(rows: list[dict], names: list[str]) -> list[str]:
    flat = [f"{describe(n).label} ({why})" for n in names if (why := uninformative(rows, n))]
    noisy = [describe(n).label for n in names if not uninformative(rows, n)
             and all(r["rank"].get(n) == 1 or r["near_best"].get(n) for r in rows if n in r["rank"])]
    lines = []
    if flat:
        lines.append("- **Cannot tell apart** (moved to Details): " + "; ".join(flat) + ".")
    if noisy:
        lines.append("- **Within noise of the best in every cell:** " + ", ".join(noisy)
                     + " (differences exist but no interval excludes 0).")
    return lines


def takeaways(rows: list[dict], results_dir: Path) -> list[str]:
    """Markdown bullets: what the numbers support, and nothing they do not."""
    ok = [r for r in rows if r["status"] == "ok"]
    names = metric_names(ok)
    quality = primary_metric(names)
    if len(ok) < 2 or quality is None:
        return ["- Fewer than two finished cells with a task metric: nothing to compare yet."]
    items = load_row_items(ok, results_dir)
    trained = [r for r in ok if r["strategy"] != BASE]
    lines = _task(ok, quality, items) + _forgetting(trained, names, items) + _safety(trained, items)
    lines += _cost(ok, quality, items) + _regressions(trained, names) + _cannot_tell(ok, names)
    if any(r.get("high_load") for r in ok):
        lines.append("- Time figures of some cells were measured under high machine load (see the header).")
    return lines

