"""The bottom line of a leaderboard, from the numbers alone: the best cell per question, with its interval and the
cells indistinguishable from it; the significant regressions against the base; what the matrix cannot tell apart.

Questions: task quality (the primary task metric, every ok cell, the base included), forgetting (general-text
perplexity, else the first general benchmark: the trained cell that moved least), safety (harmful-prompt refusal
among trained cells) and cost (of the cells indistinguishable from the best on task quality, the cheapest).
Nothing is claimed that degenerate output would produce: a metric on which every cell prints the same value or
every cell is at chance has no best (table.uninformative), and cost is only asked of cells that beat the base.

Significance is decided once for all the comparisons the takeaways rest on (the best against each other cell per
question, every trained cell against the base on the task and on each forgetting and safety metric): each is a
seed-aware test (prior.seed_aware: the paired item bootstrap plus each trained side's training noise, measured by
its seeds and moderated by a noise prior where one is given), and Benjamini-Hochberg at 5% over all of them
decides which are significant; a line says so. Where cells cannot be told apart, the difference the comparison
could have detected (80% power, 5% level: noise.detectable_difference) is stated beside it. The tables keep each
comparison's own 95% interval.

    lines = takeaways(rows, differences)   # rows and differences from table.annotate; markdown bullet lines
"""

from __future__ import annotations

import math

from harness.report import deltas, prior
from harness.report.frame import BASE
from harness.report.noise import benjamini_hochberg, detectable_difference
from harness.report.table import (
    Differences,
    format_interval,
    is_side_effect,
    metric_names,
    primary_metric,
    rank,
    uninformative,
)
from harness.suites import describe, is_per_token

SAFETY = "refusal_harmful"
FDR = 0.05


class Comparisons:
    """The takeaways' comparisons: `add` each first, then `correct` once (Benjamini-Hochberg over all of them);
    `significant(a, b, name)` then answers by the adjusted p."""

    def __init__(self, differences: Differences):
        self.differences, self.found, self.q = differences, {}, {}

    def _key(self, a: dict, b: dict, name: str) -> tuple:
        return id(a), id(b), name

    def add(self, a: dict, b: dict, name: str) -> dict:
        """b against a on one metric: the table's difference (deltas) and the seed-aware test."""
        key = self._key(a, b, name)
        if key in self.found:
            return self.found[key]
        self.found[key] = {**self.differences(a, b, name), "a": a, "name": name}
        return self.found[key]

    def correct(self) -> None:
        keys = [k for k, t in self.found.items() if math.isfinite(t["iv"]["p"])]
        self.q = dict(zip(keys, benjamini_hochberg([self.found[k]["iv"]["p"] for k in keys]), strict=True))

    def significant(self, a: dict, b: dict, name: str) -> bool:
        key = self._key(a, b, name)
        if key not in self.found:  # not declared: its own test, uncorrected (never the case in takeaways())
            return deltas.significant(self.add(a, b, name)["iv"])
        t = self.found[key]
        return self.q.get(key, 1.0) < FDR and deltas.significant(t["iv"])

    def delta(self, a: dict, b: dict, name: str) -> float:
        return self.add(a, b, name)["iv"]["delta"]

    def detectable(self, a: dict, b: dict, name: str) -> tuple[float, str]:
        """(the smallest difference this comparison detects at 80% power and 5% level, what it assumed)."""
        t = self.add(a, b, name)
        d, iv = t["d"], t["iv"]
        units = t["df"] + 1 if math.isfinite(t["df"]) else (d.get("n_paired") or 1)
        item_sd = (d["hi"] - d["lo"]) / (2 * prior.Z) * math.sqrt(units)
        terms = [x for x in iv["terms"] if x is not None]
        if not terms:
            return detectable_difference(item_sd, int(units)), f"{int(units)} items, training noise not measured"
        var = sum(x.var for x in terms) / len(terms)
        seeds = min(x.seeds for x in terms)
        prior_df = max(0.0, min(x.df for x in terms) - seeds + 1)
        if is_per_token(name):  # the seed variance of log perplexity, in perplexity units at the first side's value
            var *= a["metrics"][name]["value"] ** 2
        return (detectable_difference(item_sd, int(units), var, seeds, prior_df),
                f"{int(units)} items, {seeds} seed(s) with training noise")

    def line(self) -> str:
        return (f"- Significance: Benjamini-Hochberg at 5% over {len(self.q)} comparisons (each a paired "
                "difference over items plus training noise where seeds or a noise prior measure it); each "
                "comparison's own 95% interval is in the tables.")


def _shown(x: float, name: str) -> str:
    f = describe(name).fmt
    return format_interval(x, x, x, f).split(" ")[0]


def _cells(rows: list[dict]) -> str:
    """Cell labels; a cell whose rate search ended at an edge of its grid says so (its optimum may lie beyond)."""
    return ", ".join(f"`{r['label']}`" + (" (**edge** of its learning-rate search)" if "edge" in r.get("bracket", [])
                                         else "") for r in rows)


def _value(row: dict, name: str) -> str:
    m = row["metrics"][name]
    return format_interval(m["value"], m["lo"], m["hi"], describe(name).fmt)


def _others(rows: list[dict], name: str) -> tuple[list[dict], list[dict]]:
    """(the best rows, tied as printed; the rows ranked below them)."""
    ranks = rank(rows, name)
    return ([r for r in rows if ranks.get(id(r)) == 1],
            [r for r in rows if id(r) in ranks and ranks[id(r)] > 1])


def best_of(rows: list[dict], name: str, tests: Comparisons) -> tuple[list[dict], list[dict]]:
    """(the best rows, tied as printed; the other rows not significantly different from the first best)."""
    best, below = _others(rows, name)
    return best, [r for r in below if not tests.significant(best[0], r, name)]


def _detectable(tests: Comparisons, best: dict, peers: list[dict], name: str) -> str:
    """The largest difference any of these comparisons could have missed: what "indistinguishable" means here."""
    found = [tests.detectable(best, r, name) for r in peers]
    size, how = max(found, key=lambda f: f[0])
    return f"(a difference of {_shown(size, name)} would be detected at 80% power; {how})"


def _answer(question: str, rows: list[dict], name: str, tests: Comparisons, among: str) -> str:
    head = f"**{question}** ({describe(name).label} {'↑' if describe(name).higher_is_better else '↓'}, {among})"
    if why := uninformative(rows, name):
        return f"- {head}: no best, {why}."
    if len(rows) == 1:  # nothing to be best among
        return f"- {head}: only {_cells(rows)} measured, at {_value(rows[0], name)}."
    best, peers = best_of(rows, name, tests)
    text = f"- {head}: best {_cells(best)} at {_value(best[0], name)}"
    text += (f"; indistinguishable from it: {_cells(peers)} {_detectable(tests, best[0], peers, name)}" if peers
             else "; every other cell is significantly worse")
    return text + "."


def _task(rows: list[dict], quality: str, tests: Comparisons) -> list[str]:
    line = _answer("Task quality", rows, quality, tests, "all cells")
    best = [] if uninformative(rows, quality) else _others(rows, quality)[0]
    if best and all(r["strategy"] == BASE for r in best):
        line += " No trained cell beats the base model."
    return [line]


def _forgetting_metric(trained: list[dict], names: list[str]) -> str | None:
    general = [n for n in names if describe(n).general and not uninformative(trained, n)]
    return "ppl_general" if "ppl_general" in general else next(iter(general), None)


def _forgetting(trained: list[dict], names: list[str], tests: Comparisons, bases: dict) -> list[str]:
    name = _forgetting_metric(trained, names)
    if name is None or not trained:
        return []
    line = _answer("Forgetting", trained, name, tests, "trained cells, least forgetting")
    best, _ = _others(trained, name)
    base = bases.get(best[0]["model"])
    if (d := best[0]["vs_base"].get(name)) and base is not None and tests.significant(base, best[0], name):
        f = describe(name).fmt
        line += f" It still differs from the base by {format_interval(d['delta'], d['lo'], d['hi'], f, signed=True)}."
    return [line]


def _safety(trained: list[dict], tests: Comparisons) -> list[str]:
    if not any(SAFETY in r["metrics"] for r in trained):
        return []
    return [_answer("Safety", [r for r in trained if SAFETY in r["metrics"]], SAFETY, tests,
                    "trained cells, refusal of harmful prompts")]


def _beats_base(r: dict, name: str, tests: Comparisons, bases: dict) -> bool:
    base = bases.get(r["model"])
    return (r["strategy"] != BASE and base is not None and name in r["vs_base"] and tests.significant(base, r, name)
            and (tests.delta(base, r, name) > 0) == describe(name).higher_is_better)


def _cost(rows: list[dict], quality: str, tests: Comparisons, bases: dict) -> list[str]:
    """The cheapest of the trained cells that share the best task quality (tied or indistinguishable)."""
    if uninformative(rows, quality):
        return []
    best, peers = best_of(rows, quality, tests)
    pool = [r for r in best + peers if _beats_base(r, quality, tests, bases)]
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


def _regressions(trained: list[dict], names: list[str], tests: Comparisons, bases: dict) -> list[str]:
    side = [n for n in names if is_side_effect(n)]
    found = []
    for r in trained:
        worse = []
        base = bases.get(r["model"])
        for n in side:
            d = r["vs_base"].get(n)
            if (d and base is not None and tests.significant(base, r, n)
                    and (tests.delta(base, r, n) < 0) == describe(n).higher_is_better):
                shown = format_interval(d['delta'], d['lo'], d['hi'], describe(n).fmt, True)
                worse.append(f"{describe(n).label} {shown}")
        if worse:
            found.append(f"  - `{r['label']}`: " + ", ".join(worse))
    if not side:
        return []
    if not found:
        return ["- **Regressions against the base:** none significant on any forgetting or safety metric."]
    return ["- **Regressions against the base** (significant after the correction below; the 95% interval of the "
            "paired difference is shown):", *found]


def _cannot_tell(rows: list[dict], names: list[str], tests: Comparisons) -> list[str]:
    flat = [f"{describe(n).label} ({why})" for n in names if (why := uninformative(rows, n))]
    noisy = []
    for n in names:
        if uninformative(rows, n) or not all(r["rank"].get(n) == 1 or r["near_best"].get(n)
                                             for r in rows if n in r["rank"]):
            continue
        best, below = _others([r for r in rows if r["status"] == "ok"], n)
        noisy.append(describe(n).label + (f" {_detectable(tests, best[0], below, n)}" if best and below else ""))
    lines = []
    if flat:
        lines.append("- **Cannot tell apart** (moved to Details): " + "; ".join(flat) + ".")
    if noisy:
        lines.append("- **Within noise of the best in every cell:** " + ", ".join(noisy)
                     + " (differences exist but no interval excludes 0).")
    return lines


def declare(ok: list[dict], names: list[str], quality: str, tests: Comparisons) -> Comparisons:
    """Every comparison the takeaways may state, added before the correction: per question the best against each
    cell ranked below it, and every trained cell against its base on the task and each side-effect metric."""
    trained = [r for r in ok if r["strategy"] != BASE]
    questions = [(ok, quality), (trained, _forgetting_metric(trained, names)),
                 ([r for r in trained if SAFETY in r["metrics"]], SAFETY)]
    for rows, name in questions:
        if name and len(rows) > 1 and not uninformative(rows, name):
            best, below = _others(rows, name)
            for r in below:
                tests.add(best[0], r, name)
    bases = {r["model"]: r for r in ok if r["strategy"] == BASE}
    for r in trained:
        for n in [quality] + [n for n in names if is_side_effect(n)]:
            if n in r["vs_base"] and (base := bases.get(r["model"])) is not None:
                tests.add(base, r, n)
    for n in names:  # "within noise of the best in every cell"
        if not uninformative(ok, n) and n not in (quality, SAFETY):
            best, below = _others(ok, n)
            if all(r.get("near_best", {}).get(n) for r in below):
                for r in below:
                    tests.add(best[0], r, n)
    tests.correct()
    return tests


def takeaways(rows: list[dict], differences: Differences) -> list[str]:
    """Markdown bullets: what the numbers support, and nothing they do not; `differences`: the ones table.annotate
    filled (the same pairs are not computed twice)."""
    ok = [r for r in rows if r["status"] == "ok"]
    names = metric_names(ok)
    quality = primary_metric(names)
    if len(ok) < 2 or quality is None:
        return ["- Fewer than two finished cells with a task metric: nothing to compare yet."]
    tests = declare(ok, names, quality, Comparisons(differences))
    bases = {r["model"]: r for r in ok if r["strategy"] == BASE}
    trained = [r for r in ok if r["strategy"] != BASE]
    lines = _task(ok, quality, tests) + _forgetting(trained, names, tests, bases) + _safety(trained, tests)
    lines += _cost(ok, quality, tests, bases) + _regressions(trained, names, tests, bases)
    lines += _cannot_tell(ok, names, tests) + [tests.line()]
    if any(r.get("high_load") for r in ok):
        lines.append("- Time figures of some cells were measured under high machine load (see the header).")
    return lines

