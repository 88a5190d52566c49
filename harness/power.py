"""Power before a run: the smallest difference between two configurations each suite's headline metric can detect.

`harness run --dry-run` and `harness validate` print, per suite's headline metric (task: task exact match,
else the first task metric; perplexity: ppl_general, else ppl_in_domain; safety: refusal_harmful; benchmarks:
each task's first metric), the difference two configurations of the matrix's seeds must differ by for a
two-sided test at 5% to find it 80% of the time (noise.detectable_difference), from

- the items: eval.limit or the split's size (task: the test split; perplexity: the general text's documents;
  safety: the AdvBench prompts); where the data names groups (data.group), the groups are the unit;
- the sd of a per-item paired difference: from the base model's cached per-item scores (harness.basecache) where
  an entry exists, as √2 × the sd of the base's item scores (the two configurations' scores taken as independent
  given the item, which positive correlation between them only makes smaller), for a 0-1 score plus the variance
  of the flips the difference itself is made of (per_unit); else ASSUMED_SD for a 0-1 score (a paired difference
  of two 0-1 scores has sd at most 1), said "assumed"; perplexity has no default;
- the seed variance: the largest of the matrix's configurations' in the noise prior (eval.noise_from), else left
  out and said so;

and, where the matrix sets eval.target_effect (in each headline metric's own units), the items (seeds kept) or
the seeds (items kept) that would make it detectable (noise.needed).

    print("\\n".join(power_lines(spec, root, expand(spec, root))))
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.config import MatrixSpec
from harness.matrix import BASE, Cell
from harness.report.noise import LEVEL, POWER, detectable_difference, needed
from harness.suites import is_per_token

ASSUMED_SD = 1.0


@dataclass
class Headline:
    suite: str
    metric: str
    items: int | None = None  # the units of the test: items, or groups where the data names them
    unit: str = "items"
    why: str = ""  # why the items are unknown


def _task_metric(spec: MatrixSpec) -> str:
    names = list(spec.eval.task_metrics)
    first = {"rouge": "rouge_1"}.get(names[0], names[0])  # `rouge` reports rouge_1, rouge_2 and rouge_l
    return "task_exact_match" if "exact_match" in names else f"task_{first}"


def _units(rows: list, limit: int | None) -> tuple[int, str]:
    from harness.data.native import spread

    rows = spread(rows, limit)
    groups = [r["group"] for r in rows if isinstance(r, dict) and "group" in r]
    if groups and len(groups) == len(rows):
        return len(set(groups)), "groups"
    return len(rows), "items"


def headlines(spec: MatrixSpec, root: Path) -> list[Headline]:
    """Each suite's headline metric with the items it is scored on (None where they cannot be counted now)."""
    from harness.data import load_split
    from harness.data.native import read_documents, read_prompts_csv
    from harness.paths import resolve_data

    ev, out = spec.eval, []
    for suite in ev.suites:
        h = Headline(suite, {"task": _task_metric(spec), "safety": "refusal_harmful",
                             "perplexity": "ppl_general" if ev.general_text else "ppl_in_domain"}.get(suite, suite))
        try:
            if suite == "task":
                h.items, h.unit = _units(load_split(spec.data, root, "test"), ev.limit)
            elif suite == "perplexity":
                if ev.general_text:
                    h.items, h.unit = _units(read_documents(resolve_data(ev.general_text, root)), ev.limit)
                else:
                    h.items, h.unit = _units(load_split(spec.data, root, "validation"), ev.limit)
            elif suite == "safety":
                prompts = read_prompts_csv(resolve_data(ev.safety, root) / "advbench" / "harmful_behaviors.csv",
                                           "goal")
                h.items, h.unit = _units(prompts, ev.limit)
            elif suite == "benchmarks":
                for task in ev.benchmarks.tasks if ev.benchmarks else []:
                    limit = task.limit or ev.limit  # lm-eval applies it per subtask (per subject for MMLU)
                    out.append(Headline(suite, f"{task.name or task.task} (first metric)", None,
                                        why=(f"lm-eval counts its documents at run time ({limit} per subject or "
                                             "subtask)" if limit else "lm-eval counts its documents at run time; "
                                             "set eval.limit or the task's limit")))
                continue
            else:
                continue
        except Exception as e:  # a count that cannot be made must not hide the rest of the plan
            h.items, h.why = None, f"{type(e).__name__}: {e}"[:100]
        out.append(h)
    return out


def _cached_items(spec: MatrixSpec, cells: list[Cell]) -> dict:
    """The base model's cached per-item scores (the first model with a verified base-cache entry), else {}."""
    from harness import basecache, store

    if not basecache.folder().is_dir():  # no cache here: nothing to hash or look up
        return {}
    for cell in cells:
        if cell.strategy != BASE:
            continue
        try:
            entry = basecache.lookup(cell, basecache.key(cell), progress=lambda *_: None)
            items = store.load_items(entry, cell.id) if entry else None
        except Exception:  # not cacheable (hub data, a remote model) or unreadable: no cached scores
            continue
        if items:
            return items
    return {}


def item_sd(items: dict, metric: str, unit: str) -> tuple[float | None, float | None, str]:
    """(sd of a per-unit paired difference, the base's value, how it was found) for one headline metric."""
    scores = items.get(metric)
    groups = (items.get("_groups") or {}).get(metric) if unit == "groups" else None
    if is_per_token(metric) and isinstance(scores, list) and len(scores) == 2:
        nll, tok = (np.asarray(x, dtype=float) for x in scores)
        if len(nll) > 1 and tok.sum() > 0:
            rate = nll.sum() / tok.sum()
            u = (nll - rate * tok) / tok.mean()  # each document's share of log perplexity (delta method)
            ppl = math.exp(rate)
            if groups:
                u = np.asarray([u[np.asarray(groups) == g].mean() for g in dict.fromkeys(groups)])
            return math.sqrt(2) * ppl * float(np.std(u, ddof=1)), ppl, "from the base model's cached scores"
    if isinstance(scores, list) and len(scores) > 1 and all(isinstance(x, (int, float)) for x in scores):
        x = np.asarray(scores, dtype=float)
        if groups and len(groups) == len(x):
            x = np.asarray([x[np.asarray(groups) == g].mean() for g in dict.fromkeys(groups)])
        return math.sqrt(2) * float(np.std(x, ddof=1)), float(x.mean()), "from the base model's cached scores"
    if metric.startswith("ppl"):
        return None, None, "no cached base scores, and perplexity has no default spread"
    return ASSUMED_SD, None, "assumed (the most a paired difference of 0-1 scores can have)"


def per_unit(items: dict, metric: str, unit: str) -> float | None:
    """For a 0-1 score in the cached items, how many items each unit averages (1; groups: items per group), which
    noise.detectable_difference needs to add the variance of the flips a difference is made of; else None."""
    scores = items.get(metric)
    if not isinstance(scores, list) or not scores or any(x not in (0, 1) for x in scores):
        return None
    groups = (items.get("_groups") or {}).get(metric) if unit == "groups" else None
    return len(scores) / len(set(groups)) if groups and len(groups) == len(scores) else 1.0


def _prior(spec: MatrixSpec, root: Path, cells: list[Cell], metric: str, value: float | None):
    """(the largest seed variance of the matrix's configurations in the noise prior, its df, how) or Nones."""
    from harness.report.frame import ResultsError
    from harness.report.prior import config_label, load_priors

    if not spec.eval.noise_from:
        return None, None, "training noise left out (no eval.noise_from)"
    try:
        priors = load_priors(root / spec.eval.noise_from)
    except ResultsError as e:
        return None, None, f"training noise left out ({e})"
    found = [p for c in cells if c.strategy != BASE
             and (p := priors.get(config_label({"label": c.label, "cell": {"strategy": c.strategy}}), metric))]
    if not found:
        return None, None, f"training noise left out (no configuration of this matrix in {priors.text} has {metric})"
    worst = max(found, key=lambda p: p.var)
    var = worst.var
    if is_per_token(metric):
        if value is None:
            return None, None, "training noise left out (the prior is on the log scale; no cached base perplexity)"
        var *= value * value
    return var, worst.df, f"seed variance {var:.3g} from {priors.text} (the largest of its configurations)"


def power_lines(spec: MatrixSpec, root: Path, cells: list[Cell]) -> list[str]:
    seeds = len(spec.seeds)
    lines = [f"power: the smallest true difference between two configurations ({seeds} seed(s) each, the same "
             f"items) that a two-sided test at the {1 - LEVEL:.0%} level detects {POWER:.0%} of the time "
             "(the gate and the takeaways correct for many comparisons on top of this)"]
    cached = _cached_items(spec, cells)
    target = spec.eval.target_effect
    for h in headlines(spec, root):
        head = f"  {h.suite:<11} {h.metric}: "
        if not h.items:
            lines.append(head + f"items unknown ({h.why})")
            continue
        sd, value, how = item_sd(cached, h.metric, h.unit)
        if sd is None:
            lines.append(head + f"not estimated for {h.items:,} {h.unit} ({how})")
            continue
        var, prior_df, noise = _prior(spec, root, cells, h.metric, value)
        flips = per_unit(cached, h.metric, h.unit)
        mdd = detectable_difference(sd, h.items, var, seeds, prior_df, per_unit=flips)
        lines.append(head + f"{mdd:.3g} with {h.items:,} {h.unit}; item sd {sd:.3g} {how}; {noise}")
        if target:
            if mdd <= target:
                text = "detectable as planned"
            else:
                more = needed(target, sd, h.items, var, seeds, prior_df, per_unit=flips)
                ways = ([f"{more['items']:,} {h.unit} (seeds kept)"] if more["items"] else []) + (
                    [f"{more['seeds']} seeds ({h.unit} kept)"] if more["seeds"] else [])
                text = ("needs " + " or ".join(ways) if ways
                        else "neither more items (seeds kept) nor more seeds (items kept) alone reach it")
            lines.append(f"  {'':<11} target effect {target:g}: {text}")
    return lines
