"""Synthetic results folders for report and gate tests: real per-item scores, metrics computed from them."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from harness import store
from harness.evals import stats
from harness.suites import is_bpb

ENV = {"python": "3.11", "platform": "test", "device": "cpu (1 threads)", "packages": {"torch": "2.13.0"},
       "git": {"sha": "0123456789abcdef", "dirty": False}}


def binary(p: float, n: int, seed: int) -> list[float]:
    return (np.random.default_rng(seed).random(n) < p).astype(float).tolist()


def ppl_items(scale: float, n: int = 40, seed: int = 0) -> list[list]:
    counts = np.random.default_rng(99).integers(5, 30, n)  # the same documents on every side: pairable
    rng = np.random.default_rng(seed)
    return [(counts * scale * rng.uniform(0.8, 1.2, n)).tolist(), counts.tolist()]


def _rate(name: str, scores) -> tuple:
    """Perplexity items as the evals hand them to stats.interval: BitsPerByte for `*_bpb`, else a tuple."""
    return stats.BitsPerByte(*scores) if is_bpb(name) else tuple(scores)


def _suites(results_dir: Path, metrics: dict) -> list[str]:
    """The suites of the folder's cells so far (one consistent set), else those whose metrics this cell carries:
    a stored ok cell must have metrics for every suite it lists."""
    for path in sorted((Path(results_dir) / "cells").glob("*.json")):
        return json.loads(path.read_text("utf-8"))["cell"]["eval"]["suites"]
    found = [suite for suite, prefix in (("perplexity", "ppl_"), ("task", "task_"), ("safety", "refusal_"))
             if any(n.startswith(prefix) for n in metrics)]
    return found or ["perplexity", "task"]


def save_cell(results_dir: Path, label: str, strategy: str, items: dict | None, seed: int = 0,
              params: dict | None = None, status: str = "ok", reason: str | None = None, model: str = "base-a",
              trainable: int = 0, usage: dict | None = None, intervals: bool = False, suites: list[str] | None = None,
              **extra) -> dict:
    """One cell result whose metrics are computed from `items` (`intervals`: by stats.interval, as the evals do,
    with the items' `_groups`; else a percentile bootstrap over items). CorpusScores are stored as the evals store
    them: sentence scores plus `_<name>_stats`."""
    metrics = {}
    items = None if items is None else dict(items)
    for name, scores in list((items or {}).items()):
        if name.startswith("_"):
            continue
        if intervals or isinstance(scores, stats.CorpusScores):
            metrics[name] = stats.interval(_rate(name, scores) if name.startswith("ppl") else scores,
                                           (items.get("_groups") or {}).get(name))
            if isinstance(scores, stats.CorpusScores):
                items[name], items[f"_{name}_stats"] = scores.per_item, scores.stats
            continue
        if name.startswith("ppl"):
            value, lo, hi = (stats.bpb_ci if is_bpb(name) else stats.perplexity_ci)(*scores)
            n = len(scores[0])
        else:
            value, lo, hi = stats.mean_ci(scores)
            n = len(scores)
        metrics[name] = {"value": value, "ci_low": lo, "ci_high": hi, "n": n}
    cell = {"matrix": "t", "model": {"id": model}, "strategy": strategy, "params": params or {},
            "data": {"path": "zoo:tiny-world/record", "max_length": 64},
            "budget": {"tokens": 1000, "max_seconds": None, "max_memory_mb": None},
            "train": {"batch_size": 4, "learning_rate": 0.001}, "seed": seed,
            "eval": {"suites": suites or _suites(results_dir, metrics)}, "label": label}
    key = hashlib.sha256(json.dumps([strategy, params, seed, model], sort_keys=True).encode()).hexdigest()[:12]
    result = {"id": key, "label": label, "matrix": "t",
              "cell": cell, "env": ENV, "status": status, "reason": reason, "trainable_params": trainable,
              "usage": usage if usage is not None else ({"tokens": 1000, "seconds": 2.0, "peak_memory_mb": 100.0}
                                                        if strategy != "base" else {}),
              "metrics": metrics, **extra}
    store.save(results_dir, result, items if status == "ok" else None)
    return result


def annotated_rows(results_dir: Path, priors=None) -> list[dict]:
    """A folder's leaderboard rows as table.annotate leaves them (every cell, no current-set filter)."""
    from harness.report.frame import load_results, summarize
    from harness.report.table import Differences, annotate

    rows = summarize(load_results(results_dir))
    return annotate(rows, Differences(rows, results_dir, priors))
