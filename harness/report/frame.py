"""A results folder as rows: one per cell, cells that differ only by seed collapsed into one (mean ± std).

Reading is strict: a folder without cells/, or a result that does not verify (store.damage: not JSON,
checksum mismatch, items or metrics missing), raises ResultsError naming the file, so `harness
leaderboard` and `harness compare` exit 2 instead of reporting a damaged or half a folder.

    results, left_out = current_set(load_results(Path("results/smoke")))   # one consistent set, never mixed
    rows = summarize(results)     # base cells first; rows[i]["metrics"]["task_exact_match"]["value"]
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from harness import store, timing
from harness.datasets import canonical
from harness.env import VERSIONED
from harness.matrix import BASE, evaluation  # BASE: the untrained base cell's strategy name
from harness.report import rates

# Keys of result["cell"] that do not make a different experiment: seeds are repeats of one (a later seed names the
# first seed's search it trains at, lr_from, and that search's choice, lr_chosen).
NOT_CONFIG = ("seed", "label", "root", "matrix", "lr_from", "lr_chosen")


class ResultsError(ValueError):
    """A results folder cannot be read; the message names the folder or file and what is wrong."""


def _read_json(path: Path):
    try:
        return json.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ResultsError(f"{path}: not readable as JSON ({e})") from None


def load_results(results_dir: Path) -> list[dict]:
    """Every cell result of a folder; ResultsError when the folder is not a results folder."""
    cells = Path(results_dir) / "cells"
    if not cells.is_dir():
        raise ResultsError(f"{results_dir}: not a results folder (no cells/ inside)")
    ids = store.stored_ids(results_dir)
    if not ids:
        raise ResultsError(f"{cells}: no cell results (*.json)")
    for cell_id in ids:
        if bad := store.damage(results_dir, cell_id):
            raise ResultsError(f"{bad.message}; refusing to report it (`harness run` moves it aside and runs the "
                               "cell again)")
    return [_read_json(store.cell_file(results_dir, cell_id)) for cell_id in ids]


def unverified(results: list[dict]) -> int:
    """How many results predate checksums (read on their structure alone)."""
    return sum(not store.verified(r) for r in results)


# What makes results one consistent set: the versions in the cell id (env.VERSIONED) and the matrix-wide config.
SET_KEYS = ("matrix", "data", "budget", "eval")


def set_key(result: dict, evaluation_only: bool = False) -> str:
    """Results with equal keys were measured by the same code and packages on the same data, budget and evals.

    `evaluation_only`: the training-only keys left out (matrix.evaluation), which is all a base cell depends on."""
    packages = (result.get("env") or {}).get("packages") or {}
    cell = canonical(result["cell"])  # `dataset:` references as ids spell them
    if evaluation_only:
        cell = {**evaluation(cell), "matrix": cell.get("matrix")}
    return json.dumps({"versions": {p: packages.get(p) for p in VERSIONED}, **{k: cell.get(k) for k in SET_KEYS}},
                      sort_keys=True)


def current_set(results: list[dict]) -> tuple[list[dict], list[dict]]:
    """(the newest run's set, the rest): the cells sharing the set key of the most recently finished trained cell
    (base cells: its evaluation-only key, since a base result outlives a change of budget or training).

    A run with its matrix moves the rest aside (runner.supersede); without the matrix this is the one
    consistent set a folder can report, and the report says what it left out."""
    if not results:
        return [], []
    trained = [r for r in results if r["cell"]["strategy"] != BASE] or results
    newest = max(trained, key=lambda r: (r.get("finished_at") or r.get("started_at") or "", r["id"]))
    full, evaluated = set_key(newest), set_key(newest, evaluation_only=True)

    def current(r: dict) -> bool:
        return set_key(r, evaluation_only=True) == evaluated if r["cell"]["strategy"] == BASE else set_key(r) == full

    return [r for r in results if current(r)], [r for r in results if not current(r)]


def load_items(results_dir: Path, cell_id: str) -> dict:
    """Per-item scores of a cell ({} when it has none, e.g. a failed cell)."""
    path = Path(results_dir) / "items" / f"{cell_id}.json"
    return _read_json(path) if path.is_file() else {}


def config_key(result: dict, ignore: tuple[str, ...] = ()) -> str:
    """The cell's resolved config without the seed (and `ignore`d keys), as a canonical string."""
    cell = {k: v for k, v in canonical(result["cell"]).items() if k not in NOT_CONFIG + ignore}
    return json.dumps(cell, sort_keys=True)


def _usage(results: list[dict]) -> dict:
    """Scalar usage numbers (tokens, seconds, peak memory, flops, ...), averaged over seeds."""
    keys = dict.fromkeys(k for r in results for k, v in (r.get("usage") or {}).items()
                         if isinstance(v, (int, float)) and not isinstance(v, bool))
    out = {}
    for k in keys:
        values = [r["usage"][k] for r in results if isinstance((r.get("usage") or {}).get(k), (int, float))]
        out[k] = float(np.mean(values)) if values else None
    return out


def _timing(results: list[dict]) -> dict:
    """Wall seconds per phase kind and per eval suite (harness.timing), averaged over seeds; {} before timing."""
    timed = [r["timing"] for r in results if isinstance(r.get("timing"), dict)]
    if not timed:
        return {}
    kinds = dict.fromkeys(p.get("phase") for t in timed for p in t.get("phases") or [])
    suites = dict.fromkeys(n for t in timed for n in timing.suite_seconds(t))
    tasks = dict.fromkeys(n for t in timed for n in t.get("benchmark_tasks") or {})
    return {"phases": {k: float(np.mean([timing.seconds(t, k) or 0.0 for t in timed])) for k in kinds},
            "suites": {n: float(np.mean([timing.suite_seconds(t).get(n, 0.0) for t in timed])) for n in suites},
            "benchmark_tasks": {n: float(np.mean([(t.get("benchmark_tasks") or {}).get(n, 0.0) for t in timed]))
                                for n in tasks},
            "wall_seconds": float(np.mean([t.get("wall_seconds") or 0.0 for t in timed]))}


def _metrics(results: list[dict]) -> dict:
    """Per metric: value (mean over seeds), the interval (mean of the per-seed bounds), std over seeds, the per-seed
    values, n items."""
    names = dict.fromkeys(n for r in results for n in (r.get("metrics") or {}))
    out = {}
    for name in names:
        ms = [r["metrics"][name] for r in results if name in (r.get("metrics") or {})]
        values = [m["value"] for m in ms if m.get("value") is not None and not _nan(m["value"])]
        if not values:
            continue
        out[name] = {"value": float(np.mean(values)),
                     "lo": float(np.mean([m.get("ci_low", m["value"]) for m in ms])),
                     "hi": float(np.mean([m.get("ci_high", m["value"]) for m in ms])),
                     "std": float(np.std(values, ddof=1)) if len(values) > 1 else None,
                     "seeds": len(values), "values": [float(v) for v in values], "n": ms[0].get("n"),
                     # results written before the method was recorded used the percentile bootstrap over items
                     "ci_method": ms[0].get("ci_method", "bootstrap"), "groups": ms[0].get("groups")}
    return out


# A run that keeps every core busy by itself holds the 1-minute load average near the core count (2.0-2.2 on 2
# quiet cores: its torch threads plus the runner); a second CPU-heavy process takes it toward twice that.
LOAD_SLACK = 1.25


def high_load(result: dict) -> bool:
    """The machine had over LOAD_SLACK x as many runnable threads as cores when the cell started or ended
    (env.load_*): its time-based figures (seconds, tokens/s) measure the contention as much as the cell."""
    env = result.get("env") or {}
    cpus, loads = env.get("cpus"), [env.get("load_start"), env.get("load_end")]
    return bool(cpus) and any(x is not None and x > LOAD_SLACK * cpus for x in loads)


def _nan(x) -> bool:
    return isinstance(x, float) and math.isnan(x)


def row(group: list[dict]) -> dict:
    """One leaderboard row from the results of one config (one per seed)."""
    first = group[0]
    ok = [r for r in group if r["status"] == "ok"]
    measured = ok or group  # a cell that is over budget or diverged still shows what it measured
    notes = [f"seed={r['cell'].get('seed')}: {r['status']}" + (f": {r['reason']}" if r.get("reason") else "")
             for r in group if r["status"] != "ok"] if len(group) > 1 else [first.get("reason") or ""]
    return {
        "label": rates.label(group), "model": first["cell"].get("model", {}).get("id", "?"),
        "strategy": first["cell"]["strategy"], "status": "ok" if ok else first["status"],
        "reason": "; ".join(n for n in notes if n), "ids": [r["id"] for r in measured],
        "seeds": [r["cell"].get("seed") for r in measured],
        "learning_rate": rates.trained_rate(first), "lr_text": rates.rate_text(group),
        "lr_centre": (first["cell"].get("train") or {}).get("learning_rate"),
        "lr_trials": first.get("lr_trials") or [],
        "bracket": [b for b in map(rates.bracket, group) if b],  # per seed: interior, extended or edge
        "trainable_params": first.get("trainable_params"), "total_params": first.get("total_params"),
        "artifact_bytes": first.get("artifact_bytes"), "usage": _usage(measured), "metrics": _metrics(measured),
        "high_load": any(high_load(r) for r in measured), "timing": _timing(measured),
        "reused_from": first.get("reused_from"), "points": _points(measured),
        "inference": next((r["inference"] for r in measured if r.get("inference")), None),  # the first seed's
    }


def _points(results: list[dict]) -> list[dict]:
    """A trained cell's checkpoints and interpolations (harness.points), metrics over seeds as `_metrics` does."""
    keys = dict.fromkeys(p["key"] for r in results for p in r.get("points") or [])
    out = []
    for key in keys:
        records = [p for r in results for p in r.get("points") or [] if p["key"] == key]
        first = records[0]
        out.append({**{k: first.get(k) for k in ("key", "kind", "at", "tokens", "reason")},
                    "metrics": _metrics([p for p in records if p.get("metrics")])})
    return out


def summarize(results: list[dict]) -> list[dict]:
    """Rows grouped by config (seeds collapsed); per model, the base row first, then by label."""
    groups: dict[str, list[dict]] = {}
    for r in results:
        groups.setdefault(config_key(r), []).append(r)
    rows = [row(sorted(g, key=lambda r: r["cell"].get("seed") or 0)) for g in groups.values()]
    models = list(dict.fromkeys(r["model"] for r in rows))
    return sorted(rows, key=lambda r: (models.index(r["model"]), r["strategy"] != BASE, r["label"]))


def caveats(results: list[dict]) -> dict[str, str]:
    """Each model's recorded caveat (harness.models.caveat), e.g. Qwen's "quantized twice", by model id."""
    return {r["cell"]["model"]["id"]: r["model_caveat"] for r in results if r.get("model_caveat")}
