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

from harness import env as env_info
from harness.evals.stats import METHODS
from harness.report import efficiency, plots, prior, rates, tradeoff
from harness.report.frame import BASE, LOAD_SLACK, caveats, current_set, high_load, load_items, load_results, summarize
from harness.report.headline import headline
from harness.report.table import (
    LOAD_MARK,
    Differences,
    annotate,
    format_delta,
    format_number,
    format_value,
    heading,
    is_side_effect,
    metric_names,
    ordered,
    primary_metric,
    summary_frame,
    uninformative,
)
from harness.report.takeaways import takeaways
from harness.suites import describe

SAMPLES = 3  # sample outputs per cell: its worst-scored test items first
SAMPLE_CHARS = 160


def _size(n) -> str:
    """Bytes as B / KB / MB / GB (powers of 1024)."""
    if n is None:
        return "–"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return "–"


def _esc(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _status(row: dict) -> str:
    return "ok" if row["status"] == "ok" else f"**{row['status']}**"


# (usage key, heading, format, what it means); optional ones are shown only where measured
COSTS = (("tokens", "train tokens", "{:,.0f}", "non-padding tokens trained on (the budget every cell spends)"),
         ("tuning_tokens", "tuning tokens", "{:,.0f}", "tokens spent by the learning-rate search, all trials"),
         ("seconds", "trial train s", "{:,.1f}", "wall-clock seconds training the evaluated trial (not the "
          "learning-rate search, not evaluation)"),
         ("tokens_per_second", "tok/s", "{:,.0f}", "training tokens per second of training"),
         ("peak_memory_mb", "peak MB", "{:,.0f}", "peak memory of training in MiB above the process's baseline "
          "before the model loaded (CPU: RssAnon; CUDA: torch.cuda.max_memory_allocated)"),
         ("flops", "train FLOPs", "{:.2e}", "training FLOPs, 6·N per token for full fine-tuning, 4·N + 2·T for "
          "T trainable of N parameters on a frozen base"))
TIMED = ("seconds", "tokens_per_second")  # figures the machine's load moves


def cost_columns(rows: list[dict]) -> list[tuple[str, str, str]]:
    """(usage key, heading, format) for the cost part of the main table; optional ones only when measured."""
    return [c[:3] for c in COSTS if c[0] in ("tokens", "seconds", "peak_memory_mb")
            or any(r["usage"].get(c[0]) is not None for r in rows)]


def _cost(row: dict, key: str, fmt: str) -> str:
    text = format_number(row["usage"].get(key), fmt)
    return f"{text} {LOAD_MARK}" if key in TIMED and row.get("high_load") and text != "–" else text


def main_table(rows: list[dict], names: list[str]) -> pd.DataFrame:
    multi_seed = any(len(r["seeds"]) > 1 for r in rows)
    out = []
    for r in rows:
        rec = {"cell": _esc(r["label"]), "status": _status(r)}
        if multi_seed:
            rec["seeds"] = len(r["seeds"])
        rec["lr"] = r["lr_text"].replace(", edge", ", **edge**")
        rec["trainable params"] = format_number(r["trainable_params"])
        rec["artifact"] = _size(r.get("artifact_bytes"))
        rec.update({head: _cost(r, key, fmt) for key, head, fmt in cost_columns(rows)})
        rec.update({heading(n): format_value(r, n) for n in names})
        out.append(rec)
    return pd.DataFrame(out)


def side_effect_table(rows: list[dict], names: list[str]) -> pd.DataFrame:
    return pd.DataFrame([{"cell": _esc(r["label"]), **{heading(n): format_value(r, n) for n in names}} for r in rows])


def delta_table(rows: list[dict], names: list[str]) -> pd.DataFrame:
    shown = [r for r in rows if r["vs_base"]]
    return pd.DataFrame([{"cell": _esc(r["label"]), **{f"Δ {heading(n)}": format_delta(r, n) for n in names}}
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


def preflight_warnings(results_dir: Path) -> list[str]:
    """Warnings `harness run`'s preflight kept in preflight.json: requests that ran but may not do what was meant."""
    path = Path(results_dir) / "preflight.json"
    if not path.is_file():
        return []
    try:
        warnings = json.loads(path.read_text("utf-8")).get("warnings")
    except (OSError, ValueError, AttributeError) as e:
        return [f"preflight.json unreadable ({e})"]
    return [str(w) for w in warnings] if isinstance(warnings, list) else ["preflight.json has no warnings list"]


def truncated(results_dir: Path) -> dict[str, tuple[int, int]]:
    """Per model: (training examples cut to max_length, examples), from data_report.json."""
    path = Path(results_dir) / "data_report.json"
    try:
        report = json.loads(path.read_text("utf-8")) if path.is_file() else {}
    except (OSError, ValueError):
        return {}
    tokenized = report.get("tokenized") if isinstance(report, dict) else None
    return {m: (t["truncated"], t.get("examples", 0)) for m, t in (tokenized or {}).items()
            if isinstance(t, dict) and "truncated" in t}


def versions(results: list[dict]) -> str:
    """Every version among the results: `torch 2.13.0`, or `transformers 5.23.0 (3 cells), 5.24.0 (6 cells)`."""
    def each(values: list) -> str:
        counts = Counter(v for v in values if v)
        if len(counts) <= 1:
            return next(iter(counts), "?")
        return ", ".join(f"{v} ({n} cells)" for v, n in sorted(counts.items()))

    envs = [r.get("env") or {} for r in results]
    names = list(dict.fromkeys(k for e in envs for k in (e.get("packages") or {})))
    parts = [f"python {each([e.get('python') for e in envs])}"]
    parts += [f"{k} {each([(e.get('packages') or {}).get(k) for e in envs])}" for k in names]
    shas = [(e.get("git") or {}).get("sha", "")[:10] or None for e in envs]
    if any(shas):
        dirty = any((e.get("git") or {}).get("dirty") for e in envs)
        parts[-1] += f" · git `{each(shas)}`" + (" (uncommitted changes)" if dirty else "")
    return ", ".join(parts)


def _tokenizer(results: list[dict], model: str) -> str:
    """` (tokenizer Qwen2TokenizerFast, 151,665 tokens)` for a model whose cells recorded it (harness.cell), else
    nothing: per-token perplexity compares only within one tokenizer, bits per byte across them."""
    toks = _unique(r["tokenizer"] for r in results if isinstance(r.get("tokenizer"), dict)
                   and (r.get("cell") or {}).get("model", {}).get("id") == model)
    return "".join(f" (tokenizer {t.get('class') or '?'}, {t.get('vocab_size', 0):,} tokens)"
                   for t in map(json.loads, toks))


def noise_line(results: list[dict], priors) -> str:
    """Where every interval's training-noise term comes from, for the header."""
    seeds = Counter(prior.config_label(r) for r in results if r["cell"]["strategy"] != BASE and r["status"] == "ok")
    most = max(seeds.values(), default=0)
    if priors is not None:
        return (f"- **Training noise:** each trained configuration's variance over its {most} seed(s), moderated "
                f"with the prior `{priors.text}` (harness noise); the base model has none")
    if most > 1:
        return (f"- **Training noise:** each trained configuration's own variance over its {most} seeds (no prior: "
                "few degrees of freedom, wide intervals)")
    return ("- **Training noise:** not measured (one seed, no noise prior): intervals cover new items, not a new "
            "training run")


def header(results: list[dict], results_dir: Path, title: str, left_out: list[dict] | None = None,
           priors=None) -> list[str]:
    cells = [r["cell"] for r in results]
    env = next((r["env"] for r in results if r.get("env")), {})
    models = ", ".join(f"`{m}`" + _tokenizer(results, m) for m in _unique(c.get("model", {}).get("id") for c in cells))
    cut = truncated(results_dir)
    data = ", ".join(f"`{d['path']}` (max {d.get('max_length', '?')} tokens)"
                     for d in map(json.loads, _unique(c.get("data") or {} for c in cells)) if d)
    data += "".join(f"; {n:,} of {total:,} training examples truncated to max_length"
                    + (f" (`{m}`)" if len(cut) > 1 else "") for m, (n, total) in cut.items())
    trained = [c for c in cells if c.get("strategy") != BASE] or cells  # a base result may outlive a budget change
    budgets = "; ".join(_budget(json.loads(b)) for b in _unique(c.get("budget") or {} for c in trained))
    seeds = ", ".join(str(s) for s in sorted(set(c.get("seed", 0) for c in cells)))
    suites = ", ".join(_unique(s for c in cells for s in (c.get("eval") or {}).get("suites", [])))
    statuses = ", ".join(f"{n} {s}" for s, n in Counter(r["status"] for r in results).items())
    lines = [f"# Leaderboard: {title}", "",
             f"- **Base model:** {models}",
             f"- **Data:** {data}",
             f"- **Budget:** {budgets}",
             f"- **Seeds:** {seeds} · **suites:** {suites}",
             f"- **Hardware:** {env.get('device', '?')} · {env.get('platform', '?')}",
             f"- **Versions:** {versions(results)}",
             f"- **Cells:** {len(results)} ({statuses})", noise_line(results, priors)]
    lines += [f"- **⚠ Model:** `{m}`: {note}" for m, note in caveats(results).items()]
    package_sets = _unique(json.dumps(r["env"].get("packages") or {}, sort_keys=True) for r in results if r.get("env"))
    if off := _unique(d for v in package_sets for d in env_info.drift(json.loads(v), env_info.pinned())):
        lines.append(f"- **⚠ Not the pinned versions:** measured with {', '.join(off)}; `pip install -c "
                     f"constraints.txt -e .` installs the pinned ones, and a re-run there may give other numbers")
    if left_out:
        lines.append(f"- **Left out:** {len(left_out)} older cell(s) of another version or config "
                     f"({versions(left_out)}); this report shows the newest run's set, one consistent set. "
                     "`harness run --matrix FILE` moves the others to `aside/`")
    busy = [r for r in results if high_load(r)]
    if busy:
        lines.append(f"- **Machine load:** {len(busy)} cell(s) ran with the load average above {LOAD_SLACK:g}x the "
                     f"{env.get('cpus', '?')} cores ({LOAD_MARK} on their time figures): their seconds and tokens/s "
                     "measure the contention as much as the strategy")
    for r in results:
        if reused := r.get("reused_from"):
            lines.append(f"- **Base model results reused** from matrix `{reused.get('matrix')}` (cache key "
                         f"`{str(reused.get('key'))[:12]}`): "
                         f"`{r['cell'].get('model', {}).get('id', '?')}` was not evaluated again "
                         "(`harness run --no-base-cache` re-evaluates it)")
    if search := lr_search_line(results):
        lines.append(search)
    if hygiene := data_hygiene(results_dir):
        lines.append(f"- **Data hygiene:** {hygiene}")
    lines += [f"- **Warning:** {_esc(w)}" for w in preflight_warnings(results_dir)]
    return lines


def lr_search_line(results: list[dict]) -> str | None:
    """How each cell's learning-rate search ended: the counts of interior, extended and edge cells."""
    ends = Counter(b for b in map(rates.bracket, results) if b)
    if not ends:
        return None
    limit = ", ".join(sorted({str(rates.max_extensions(r)) for r in results if rates.bracket(r)}))
    counts = ", ".join(f"{ends[k]} {k}" for k in ("interior", "extended", "edge") if ends[k])
    return (f"- **Learning-rate search:** {counts} (interior: the grid bracketed the chosen rate; extended: it did "
            f"after extra trials past its end; **edge**: still at an end after tuning.max_extensions = {limit}, so "
            "the cell's best rate may lie further out). Extra trials add to that cell's tuning tokens")


def lr_section(rows: list[dict]) -> list[str]:
    tuned = [r for r in rows if r["lr_trials"]]
    if not tuned:
        return []
    recs = []
    for r in tuned:
        shown = [f"{format_number(t.get('learning_rate'), '{:g}')} → "
                 f"{format_number(t.get('tuning_loss', t.get('val_loss')), '{:.3f}')}"
                 + (f" (PPL {format_number(t['general_ppl'], '{:.2f}')})" if t.get("general_ppl") is not None else "")
                 for t in r["lr_trials"]]
        trials = ", ".join(f"**{s}**" if t.get("chosen") else s for s, t in zip(shown, r["lr_trials"]))
        recs.append({"cell": _esc(r["label"]), "learning rate → tuning-split loss (chosen in bold)": trials,
                     "objective": r["lr_trials"][0].get("objective", "loss").replace("_", " "),
                     "tuning tokens": format_number(r["usage"].get("tuning_tokens")),
                     "tuning s": format_number(r["usage"].get("tuning_seconds"), "{:,.1f}"),
                     "tuning FLOPs": format_number(r["usage"].get("tuning_flops"), "{:.2e}"),
                     "search": ", ".join(dict.fromkeys(r["bracket"])) or "–"})
    return ["## Learning-rate search", "", pd.DataFrame(recs).to_markdown(index=False), ""]


def time_section(rows: list[dict]) -> list[str]:
    """Wall seconds per phase of each cell (harness.timing): start-up, load, training, each suite, the rest."""
    timed = [r for r in rows if r.get("timing")]
    if not timed:
        return []
    suites = list(dict.fromkeys(n for r in timed for n in r["timing"]["suites"]))
    recs = []
    for r in timed:
        t = r["timing"]
        rec = {"cell": _esc(r["label"]), "total s": format_number(t["wall_seconds"], "{:,.1f}")}
        for kind in ("start", "load", "prepare", "data", "train"):
            rec[f"{kind} s"] = format_number(t["phases"].get(kind), "{:,.1f}")
        rec.update({f"eval {n} s": format_number(t["suites"].get(n), "{:,.1f}") for n in suites})
        for kind in ("points", "inference"):  # checkpoints and interpolations (harness.points); serving cost
            if any(kind in x["timing"]["phases"] for x in timed):
                rec[f"{kind} s"] = format_number(t["phases"].get(kind, 0.0), "{:,.1f}")
        rest = sum(v for k, v in t["phases"].items()
                   if k not in ("start", "load", "prepare", "data", "train", "eval", "points", "inference"))
        rec["sanity, store, other s"] = format_number(rest, "{:,.1f}")
        if tasks := t.get("benchmark_tasks"):
            rec["benchmark tasks"] = ", ".join(f"{k} {v:,.1f}" for k, v in tasks.items())
        recs.append(rec)
    note = ("Wall seconds per phase (cells/<id>.json `timing` has each learning-rate trial and CPU seconds beside); "
            "start is the cell process's interpreter start and imports; the phases and other sum to total.")
    if any(r.get("reused_from") for r in timed):
        note += " A reused base result shows the seconds of the run that measured it."
    return ["## Where the time went", "", note, "", pd.DataFrame(recs).to_markdown(index=False, disable_numparse=True),
            ""]


RULES = (
    "How to read this: a metric cell is the value and its 95% interval (the method per metric is listed below; "
    "rows over several seeds: mean ± std over seeds); **bold** = best (only where some cell is worse), `#k` = rank "
    "among cells with status ok, values equal as printed sharing a rank, `≈` = indistinguishable from the best (the "
    "95% interval of the difference to the best cell includes 0). Differences are paired over the items both cells "
    "scored, joined on item ids (paired bootstrap; perplexity resamples documents; BLEU/chrF are re-scored as "
    "corpora on each side), otherwise taken from the two intervals (half-widths added in quadrature, marked "
    "unpaired); the interval is Δ ± t·SE, and its SE adds to that item term each trained side's training noise "
    "(its variance over seeds, moderated with the noise prior where there is one; Satterthwaite df), so with one "
    "seed and no prior it covers new items, not a new training run. Δ = cell minus the base model of the same "
    "matrix; ✱ = its interval excludes 0 (uncorrected; the Takeaways correct for many comparisons). ↑ higher is "
    "better, "
    "↓ lower is better. Numbers keep at most 4 significant digits "
    "(from 1e4 on, 2 in scientific form). Columns on which every cell scores the same, or every cell is at chance, "
    "are under Details. Every metric, interval, rank and delta is also in summary.csv / summary.json; full records "
    "in cells/<id>.json."
)

GLOSSARY = {"cell": "the strategy and its parameters (lr = learning rate)",
            "status": "ok, or why the cell has no full measurement (the reason is under the tables)",
            "seeds": "seeds averaged in the row", "lr": "learning rate trained with (n tried: a learning-rate search)",
            "trainable params": "parameters the strategy trains",
            "artifact": "size on disk of what the strategy saves (only what it trained)",
            "train s": "wall-clock seconds of every training phase (all learning-rate trials with their "
                       "tuning-split scoring; results stored before per-phase timing: the trials' training seconds)",
            "eval s": "wall-clock seconds of every evaluation suite (– for results stored before per-phase timing); "
                      "per suite under Where the time went",
            **{head: text for _, head, _, text in COSTS}}

def interval_legend(rows: list[dict]) -> list[str]:
    """One line per interval method in use, naming the metrics it served; then any pairing note."""
    def add(table: dict, key: str, name: str) -> None:
        labels = table.setdefault(key, [])
        if describe(name).label not in labels:
            labels.append(describe(name).label)

    values: dict[str, list[str]] = {}
    diffs: dict[str, list[str]] = {}
    notes: dict[str, list[str]] = {}
    count: Counter = Counter()
    for r in rows:
        for name, m in r["metrics"].items():
            add(values, m["ci_method"], name)
        for name, d in r["vs_base"].items():
            add(diffs, d["method"], name)
            if d.get("note"):
                add(notes, d["note"], name)
                count[d["note"]] += 1
    lines = [f"- interval: {METHODS.get(k, k)}: {', '.join(v)}" for k, v in values.items()]
    lines += [f"- Δ interval: {METHODS.get(k, k)}: {', '.join(v)}" for k, v in diffs.items()]
    return lines + [f"- pairing: {note} ({count[note]} Δ of {', '.join(v)})" for note, v in notes.items()]


def glossary(rows: list[dict], tables: list[pd.DataFrame]) -> list[str]:
    """Every column heading shown, explained once."""
    heads = list(dict.fromkeys(h.removeprefix("Δ ") for t in tables for h in t.columns))
    heads += [heading(n) for n in metric_names(rows) if heading(n) not in heads]  # the Details' columns too
    by_heading = {heading(n): n for n in metric_names(rows)}
    lines = []
    for h in heads:
        if h in by_heading:
            name = by_heading[h]
            lines.append(f"- **{h}**: {describe(name).help or f'lm-eval metric `{name}`'} (`{name}`)")
        elif h in GLOSSARY:
            lines.append(f"- **{h}**: {GLOSSARY[h]}")
    if any(r.get("high_load") for r in rows):
        lines.append(f"- **{LOAD_MARK}**: the load average was above {LOAD_SLACK:g}x the number of cores when the "
                     "cell started or ended (a run alone holds it near the core count); its time figures are not "
                     "comparable")
    return ["## Columns", "", *lines, ""] if lines else []


def details(rows: list[dict], names: list[str]) -> list[str]:
    """The columns that tell no cell from another, with why, and their values."""
    why = {n: reason for n in names if (reason := uninformative(rows, n))}
    if not why:
        return []
    table = pd.DataFrame([{"cell": _esc(r["label"]), **{heading(n): format_value(r, n) for n in why}} for r in rows])
    return (["## Details: columns that tell the cells apart in no way", ""]
            + [f"- **{heading(n)}**: {reason}" for n, reason in why.items()]
            + ["", table.to_markdown(index=False), ""])


def _clip(text) -> str:
    text = " ".join(str(text).split())
    return _esc(text if len(text) <= SAMPLE_CHARS else text[:SAMPLE_CHARS - 1] + "…")


def _worst_first(items: dict, name: str | None, n: int) -> list[int]:
    """Item indices ordered worst-scored first on `name` (stable: the first such items)."""
    scores = items.get(name) if name else None
    if isinstance(scores, list) and len(scores) == n and all(isinstance(x, (int, float)) for x in scores):
        return sorted(range(n), key=lambda i: scores[i])
    return list(range(n))


def samples(rows: list[dict], results_dir: Path) -> list[str]:
    """A few replies per trained cell beside the base model's, from the stored `_predictions`."""
    quality = primary_metric(metric_names(rows))
    bases = {r["model"]: r for r in rows if r["strategy"] == BASE}
    parts = []
    for r in rows:
        base = bases.get(r["model"])
        if r["status"] != "ok" or r is base or base is None:
            continue
        mine, theirs = load_items(results_dir, r["ids"][0]), load_items(results_dir, base["ids"][0])
        preds, base_preds = mine.get("_predictions"), theirs.get("_predictions")
        if not preds:
            continue
        prompts, refs = mine.get("_prompts") or [], mine.get("_references") or []
        recs = []
        for i in _worst_first(mine, quality, len(preds))[:SAMPLES]:
            ref = refs[i] if i < len(refs) else "–"
            recs.append({"item": i, "prompt": _clip(prompts[i]) if i < len(prompts) else "–",
                         "reference": _clip(" / ".join(ref) if isinstance(ref, list) else ref),
                         "base reply": _clip(base_preds[i]) if base_preds and i < len(base_preds) else "–",
                         "cell reply": _clip(preds[i])})
        parts += [f"### `{_esc(r['label'])}`", "", pd.DataFrame(recs).to_markdown(index=False), ""]
    if not parts:
        return []
    return ["## Sample outputs", "", f"Per trained cell, its {SAMPLES} worst-scored test items"
            + (f" on {describe(quality).label}" if quality else "") + " (first items on ties), beside the base "
            "model's reply to the same prompt (items/<id>.json holds them all).", "", *parts]


def markdown(results: list[dict], rows: list[dict], results_dir: Path, title: str, figures: list[Path],
             differences: Differences, left_out: list[dict] | None = None, tradeoff_lines: list[str] | None = None,
             priors=None) -> str:
    top = headline(rows).text.map(_esc)
    wide = wide_tables(rows)
    tables = [top, *(t for t in wide.values() if not t.empty)]
    parts = header(results, results_dir, title, left_out, priors) + ["", "## Takeaways", "",
                                                             *takeaways(rows, differences),
                                                             "", "## Headline", "", top.to_markdown(index=False), "",
                                                             RULES, "", *interval_legend(rows), ""]
    for section, table in wide.items():
        if not table.empty:
            parts += [f"## {section}", "", table.to_markdown(index=False), ""]
    if figures:
        parts += ["## Plots", ""] + [f"![{f.stem}]({f.name})" for f in figures] + [""]
        if any(r.get("high_load") for r in rows):
            parts += [f"The training-time panel marks cells measured under high load ({LOAD_MARK}, ringed red).", ""]
    parts += tradeoff_lines or []
    parts += efficiency.section(rows)
    parts += samples(rows, results_dir)
    parts += lr_section(rows)
    parts += time_section(rows)
    notes = [r for r in rows if r["reason"]]
    if notes:
        parts += ["## Cells that did not finish normally", ""]
        parts += [f"- `{_esc(r['label'])}` ({r['status']}): {_esc(r['reason'])}" for r in notes] + [""]
    parts += details(rows, metric_names(rows))
    parts += glossary(rows, tables)
    return "\n".join(parts)


def wide_tables(rows: list[dict]) -> dict[str, pd.DataFrame]:
    """The markdown's tables below the headline, by section title."""
    shown = [n for n in metric_names(rows) if not uninformative(rows, n)]  # the rest go to the Details
    quality = [n for n in shown if not is_side_effect(n)]
    side = [n for n in shown if is_side_effect(n)]
    delta_names = [n for n in [primary_metric(shown)] if n] + side
    return {"Task quality and cost": main_table(rows, quality),
            "Forgetting and safety": side_effect_table(rows, side) if side else pd.DataFrame(),
            "Change against the base model": (delta_table(rows, delta_names)
                                              if any(r["vs_base"] for r in rows) and delta_names else pd.DataFrame())}


def extra_sections(rows: list[dict], curves: dict, spec) -> list[dict]:
    """The markdown's operating-point and inference-cost sections as the page shows them: title, text, tables."""
    out = []
    if made := tradeoff.tables(curves, rows, spec):
        rule, summary, detail = made
        notes = [f"`{label}`: not interpolated: {why}" for label, why in tradeoff.not_interpolated(rows).items()]
        out.append({"id": "tradeoff", "title": tradeoff.TITLE, "text": [rule, *notes],
                    "tables": {"Per cell": summary, "Every point": detail}})
    if made := efficiency.table(rows):
        note, df = made
        out.append({"id": "efficiency", "title": efficiency.TITLE, "text": [note, f"`{efficiency.FORMULA}`"],
                    "tables": {"Per cell": df}})
    return out


def report_page(results: list[dict], rows: list[dict], results_dir: Path, title: str,
                left_out: list[dict] | None = None, curves: dict | None = None, spec=None, priors=None) -> str:
    """report.html's content: the same header, headline and tables as the markdown, plus charts and evidence."""
    from harness.report.html import leaderboard_page

    lines = header(results, results_dir, title, left_out, priors)[2:]  # without the title and its blank line
    return leaderboard_page(results, rows, results_dir, title, [h.removeprefix("- ") for h in lines],
                            wide_tables(rows), data_hygiene(results_dir), RULES,
                            extra_sections(rows, curves or {}, spec), curves, spec)


def write_leaderboard(results_dir: Path, title: str | None = None, plot: bool = True,
                      noise: Path | None = None) -> Path:
    """LEADERBOARD.md, summary.csv, summary.json and the plots, all inside `results_dir`, of the folder's one
    consistent set (frame.current_set: the newest run's cells; the header counts what it left out).

    `noise`: the training-noise prior of the takeaways' tests (a noise.json or its folder; `harness run` passes the
    matrix's eval.noise_from); default: the folder's own noise.json where `harness noise` wrote one."""
    results_dir = Path(results_dir)
    own = results_dir / prior.NOISE_FILE
    priors = prior.load_priors(noise if noise is not None else own if own.is_file() else None)
    results, left_out = current_set(load_results(results_dir))
    rows = summarize(results)
    differences = Differences(rows, results_dir, priors)
    rows = ordered(annotate(rows, differences))
    curves, spec = tradeoff.curves_for(rows, results_dir), tradeoff.limits(results)
    figures = plots.write_plots(rows, results_dir, curves, spec) if plot else []
    summary_frame(rows).to_csv(results_dir / "summary.csv", index=False)
    (results_dir / "summary.json").write_text(json.dumps({"title": title or results_dir.name, "rows": rows},
                                                         indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    out = results_dir / "LEADERBOARD.md"
    out.write_text(markdown(results, rows, results_dir, title or results_dir.name, figures, differences, left_out,
                            tradeoff.section(curves, rows, spec, tradeoff.not_interpolated(rows)), priors),
                   encoding="utf-8")
    (results_dir / "report.html").write_text(report_page(results, rows, results_dir, title or results_dir.name,
                                                         left_out, curves, spec, priors), encoding="utf-8")
    return out
