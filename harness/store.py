"""The results store: one JSON per cell, written atomically, plus a per-item sidecar, each checksummed.

    results/<matrix>/cells/<cell_id>.json    resolved cell, env, status, usage, metrics with CIs
    results/<matrix>/items/<cell_id>.json    per-item scores (paired comparisons, the regression gate)
    results/<matrix>/aside/<UTC time>-<why>/ results moved out of the way, never deleted

An items file holds, per metric, its per-item scores in the suite's order, auxiliaries beside
them (keys starting with "_"), and the ids and groups of every per-item list:

    "<metric>": [score, ...]                       one per item
    "ppl_<name>": [[nll_sum, ...], [tokens, ...]]  one per document
    "_predictions", "_<metric>_stats", "_refusal_<set>_replies", ...   one per item; other "_" keys
                                                   (e.g. "_sanity_batch_invariance") are not per-item
    "_ids": {"<key>": ["<16 hex>", ...]}           every per-item list's item ids, same order
                                                   (harness.evals.items: a hash of the item's content)
    "_groups": {"<key>": ["<group>", ...]}         only for lists whose set declares groups (data.group,
                                                   a benchmark's subtask); the intervals resample them

Files written before ids were stored have neither "_ids" nor "_groups"; pairing them is by position.

A cell whose result has a final status is never run again unless asked (`--rerun`);
a `failed` cell (a crash, not a measurement) is retried by the next run.

Every cell file carries `sha256` (of its own content, canonical JSON without that key) and
`items_sha256` (of its items file's bytes). `damage` tells why a stored result cannot be
trusted (unreadable, not a cell, checksum mismatch, items missing, metrics missing for a suite
its config lists); the runner moves such a result aside with `quarantine` and runs the cell
again, the reports refuse it. Results written before checksums existed are read on their
structure alone (`verified` says which).

    save(results_dir, result, items); load_all(results_dir)
    if why := damage(results_dir, cell_id): quarantine(results_dir, cell_id, why.code)
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from harness.suites import SUITES

SCHEMA = 1
STATUSES = ("ok", "not_applicable", "over_budget", "diverged", "failed")
FINAL = ("ok", "not_applicable", "over_budget", "diverged")
ASIDE = "aside"


class StoreError(RuntimeError):
    """A results folder cannot be written (read-only, full disk); the message names the folder."""


def _dumps(obj) -> str:
    return json.dumps(obj, indent=1, ensure_ascii=False, sort_keys=False) + "\n"


def _sha256(text: str | bytes) -> str:
    return hashlib.sha256(text.encode("utf-8") if isinstance(text, str) else text).hexdigest()


def content_sha256(result: dict) -> str:
    """The checksum a cell file carries: canonical JSON of everything but the `sha256` key itself."""
    body = {k: v for k, v in result.items() if k != "sha256"}
    return _sha256(json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":")))


def write_text_atomic(path: Path, text: str) -> None:
    """Temp file in the same folder, fsync, rename, fsync the folder: readers never see half a file,
    and a result that was reported written survives a kill -9 or a power cut. A folder that cannot
    be written (read-only, disk full) raises StoreError naming it, with no temp file left behind."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
    except OSError as e:
        if tmp:
            Path(tmp).unlink(missing_ok=True)
        raise StoreError(f"{path.parent}: cannot write {path.name} ({e.strerror or e}); "
                                  "is the folder read-only or the disk full?") from None
    except BaseException:
        if tmp:
            Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, obj) -> None:
    write_text_atomic(path, _dumps(obj))


def cell_file(results_dir: Path, cell_id: str) -> Path:
    return Path(results_dir) / "cells" / f"{cell_id}.json"


def items_file(results_dir: Path, cell_id: str) -> Path:
    return Path(results_dir) / "items" / f"{cell_id}.json"


def save_items(results_dir: Path, cell_id: str, items: dict | str) -> str:
    """Write a cell's items file (a dict, or the exact text of one, copied byte for byte); its sha256."""
    text = items if isinstance(items, str) else _dumps(items)
    write_text_atomic(items_file(results_dir, cell_id), text)
    return _sha256(text)


def save(results_dir: Path, result: dict, items: dict | str | None = None, items_sha256: str | None = None) -> None:
    """Write a cell's result, and first its items (`items`, or `items_sha256` of an items file already written)."""
    if result.get("status") not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, got {result.get('status')!r}")
    result = {k: v for k, v in result.items() if k not in ("schema", "sha256", "items_sha256")}
    items_sha = items_sha256
    if items is not None:  # items first: a result on disk always has its items beside it
        items_sha = save_items(results_dir, result["id"], items)
    stored = {"schema": SCHEMA, **result, "items_sha256": items_sha}
    write_json_atomic(cell_file(results_dir, result["id"]), {**stored, "sha256": content_sha256(stored)})


def load(results_dir: Path, cell_id: str) -> dict | None:
    path = cell_file(results_dir, cell_id)
    return json.loads(path.read_text("utf-8")) if path.is_file() else None


def load_items(results_dir: Path, cell_id: str) -> dict | None:
    path = items_file(results_dir, cell_id)
    return json.loads(path.read_text("utf-8")) if path.is_file() else None


@dataclass(frozen=True)
class Damage:
    code: str  # short, safe in a folder name: not-json, not-a-cell, checksum, no-items, items-checksum, no-metrics
    message: str  # names the file and what is wrong


def _read_cell(path: Path) -> tuple[dict | None, Damage | None]:
    try:
        raw = path.read_bytes()
    except OSError as e:
        return None, Damage("unreadable", f"{path}: cannot be read ({e.strerror or e})")
    if not raw.strip():
        return None, Damage("empty", f"{path}: empty file (a cell result is a JSON object)")
    try:
        result = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        return None, Damage("not-json", f"{path}: not valid JSON, truncated or garbage ({e})")
    if not isinstance(result, dict):
        return None, Damage("not-a-cell", f"{path}: a JSON {type(result).__name__}, not a cell result object")
    missing = [k for k in ("id", "cell", "status") if k not in result]
    if missing or not isinstance(result["cell"], dict) or "strategy" not in result["cell"]:
        what = ", ".join(missing) or "cell.strategy"
        return None, Damage("not-a-cell", f"{path}: not a cell result (missing {what})")
    if result["id"] != path.stem:
        return None, Damage("not-a-cell", f"{path}: holds the result of cell {result['id']!r}, not {path.stem!r}")
    if result["status"] not in STATUSES:
        return None, Damage("not-a-cell", f"{path}: status {result['status']!r} is not one of {', '.join(STATUSES)}")
    return result, None


def suite_metrics_missing(result: dict) -> list[str]:
    """Suites the cell's config lists (with their data named) that left no metric in an `ok` result."""
    ev = result["cell"].get("eval") or {}
    names = list(result.get("metrics") or {})
    missing = []
    for suite in ev.get("suites") or []:
        if suite not in SUITES or (SUITES[suite].data_key and not ev.get(SUITES[suite].data_key)):
            continue
        if suite == "benchmarks":
            tasks = [t.get("name") or t.get("task") for t in (ev.get("benchmarks") or {}).get("tasks") or []]
            missing += [f"benchmarks ({t})" for t in tasks if not any(n.startswith(f"{t}_") for n in names)]
        elif not any(n.startswith(SUITES[suite].prefixes) for n in names):
            missing.append(suite)
    return missing


def damage(results_dir: Path, cell_id: str) -> Damage | None:
    """Why the stored result of `cell_id` cannot be trusted, or None when it verifies (or is absent)."""
    path = cell_file(results_dir, cell_id)
    if not path.exists():
        return None
    result, bad = _read_cell(path)
    if bad:
        return bad
    if "sha256" in result and result["sha256"] != content_sha256(result):
        return Damage("checksum", f"{path}: checksum mismatch (edited or damaged since it was written)")
    items = items_file(results_dir, cell_id)
    if result.get("items_sha256"):
        if not items.is_file():
            return Damage("no-items", f"{path}: its items file {items} is missing")
        if _sha256(items.read_bytes()) != result["items_sha256"]:
            return Damage("items-checksum", f"{items}: checksum mismatch with {path} (edited or damaged)")
    if result["status"] == "ok":
        if "sha256" not in result and not items.is_file():  # old results: an ok cell always wrote its items
            return Damage("no-items", f"{path}: its items file {items} is missing")
        if not isinstance(result.get("metrics"), dict) or not all(
                isinstance(m, dict) and "value" in m for m in result["metrics"].values()):
            return Damage("no-metrics", f"{path}: status ok but its metrics are missing or not {{value, ...}} objects")
        if missing := suite_metrics_missing(result):
            return Damage("no-metrics", f"{path}: status ok but no metrics for the suite(s) {', '.join(missing)} "
                                        "its config lists")
    return None


def verified(result: dict) -> bool:
    """True when the result carries a checksum (written by this version); False for older results."""
    return "sha256" in result


def stored_ids(results_dir: Path) -> list[str]:
    return [p.stem for p in sorted((Path(results_dir) / "cells").glob("*.json"))]


def quarantine(results_dir: Path, cell_id: str, why: str) -> Path:
    """Move a cell's result, items and logs to results/<m>/aside/<UTC time>-<why>/ (same sub-folders); never delete.

    Returns the folder they went to. The cell then counts as not run, so the next run runs it again.
    """
    results_dir = Path(results_dir)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    dest = results_dir / ASIDE / f"{stamp}-{re.sub(r'[^A-Za-z0-9_.-]+', '-', why).strip('-.') or 'aside'}"
    moving = [p for p in (cell_file(results_dir, cell_id), items_file(results_dir, cell_id)) if p.exists()]
    moving += sorted((results_dir / "logs").glob(f"{glob.escape(cell_id)}.*"))
    try:
        for src in moving:
            target = dest / src.relative_to(results_dir)
            target.parent.mkdir(parents=True, exist_ok=True)
            n = 1
            while target.exists():  # the same cell set aside twice in one second: keep both
                target, n = target.with_name(f"{src.stem}.{n}{src.suffix}"), n + 1
            os.replace(src, target)
    except OSError as e:
        raise StoreError(f"{results_dir}: cannot move {cell_id}'s result aside to {dest} "
                                  f"({e.strerror or e}); is the folder read-only?") from None
    return dest


def is_finished(results_dir: Path, cell_id: str) -> bool:
    result = load(results_dir, cell_id)
    return result is not None and result.get("status") in FINAL


def chosen_trial(result: dict) -> dict | None:
    """The learning-rate search's trial the cell was trained at (`chosen: true`); None where no search ran."""
    return next((t for t in result.get("lr_trials") or [] if t.get("chosen")), None)


def load_all(results_dir: Path) -> list[dict]:
    return [json.loads(p.read_text("utf-8")) for p in sorted((Path(results_dir) / "cells").glob("*.json"))]
