"""Run a cell's evaluation suites on a model: metrics with 95% intervals, plus per-item scores.

Each suite is a plain function `(model, tok, cell) -> {metric: per-item scores}`, one module
per suite (perplexity.py, task.py, safety.py): a list of per-item scores (mean), a tuple of
per-document NLL sums and token counts (perplexity), or `CorpusScores` (BLEU, chrF: the
corpus value, items resampled). Beside them, `_ids` and `_groups` ({key: one entry per item})
name each item and the group it was drawn with (harness.evals.items). `run_suites` adds the
uncertainty (stats.interval: groups resampled where given); other keys starting with "_"
(predictions, replies, corpus statistics) are kept with the items but are not metrics.

    metrics, items = run_suites(model, tok, cell)
    metrics["task_exact_match"]   # {"value": 0.83, "ci_low": 0.71, "ci_high": 0.91, "n": 96,
                                  #  "ci_method": "wilson-clustered", "groups": 24}
"""

from __future__ import annotations

from harness.evals import perplexity, safety, task
from harness.evals.stats import CorpusScores, interval
from harness.models import autocast
from harness.suites import SUITES
from harness.timing import Clock


def benchmarks(model, tok, cell) -> dict:
    from harness.evals.benchmarks import run

    return run(model, tok, cell)


# one run function per row of harness.suites.SUITES
RUNS = {"perplexity": perplexity.run, "task": task.run, "benchmarks": benchmarks, "safety": safety.run}


def run_suites(model, tok, cell, progress=print, clock: Clock | None = None, on_suite=None) -> tuple[dict, dict]:
    """`clock` gets one eval record per suite (and the benchmarks' per-task seconds, where the suite reports
    them as `_timing`); `on_suite(name, index, total, seconds)` hears each suite start (seconds None) and end.
    Each suite runs under eval.bf16's autocast (harness.models.autocast), its coherence judge included."""
    model.eval()
    clock = clock or Clock()
    metrics, items, ids, groups = {}, {}, {}, {}
    names = [n for n in cell.eval.suites if not SUITES[n].data_key or getattr(cell.eval, SUITES[n].data_key)]
    for i, name in enumerate(names):
        progress(f"  eval {name}")
        if on_suite:
            on_suite(name, i, len(names), None)
        with clock.phase("eval", name), autocast(model, cell.eval.bf16):
            scores = RUNS[name](model, tok, cell)
        if on_suite:
            on_suite(name, i, len(names), clock.phases[-1]["wall"])
        clock.benchmark_tasks.update(scores.pop("_timing", None) or {})
        ids.update(scores.pop("_ids", {}))
        groups.update(scores.pop("_groups", {}))
        for metric, values in scores.items():
            items[metric] = values
            if metric.startswith("_"):
                continue
            metrics[metric] = interval(values, groups.get(metric))
            if isinstance(values, CorpusScores):  # stored: sentence scores, and the statistics deltas re-score
                items[metric], items[f"_{metric}_stats"] = values.per_item, values.stats
                for labels in (ids, groups):
                    if metric in labels:
                        labels[f"_{metric}_stats"] = labels[metric]
    items["_ids"] = ids
    if groups:
        items["_groups"] = groups
    return metrics, items
