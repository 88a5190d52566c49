"""The results store: one JSON per cell, written atomically, plus a per-item sidecar.

    results/<matrix>/cells/<cell_id>.json    resolved cell, env, status, usage, metrics with CIs
    results/<matrix>/items/<cell_id>.json    per-item scores (paired comparisons, the regression gate)
    results/<matrix>/aside/<UTC time>-<why>/{cells,items,logs}/...   results moved out of the set, never deleted

A cell whose result has a final status is never run again unless asked (`--rerun`);
a `failed` cell (a crash, not a measurement) is retried by the next run.

    save(results_dir, result, items); load_all(results_dir); quarantine(results_dir, cell_id, "superseded")
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from datetime import datetime, timezone
from pathlib import Path

SCHEMA = 1
STATUSES = ("ok", "not_applicable", "over_budget", "diverged", "failed")
FINAL = ("ok", "not_applicable", "over_budget", "diverged")
ASIDE = "aside"


def write_json_atomic(path: Path, obj) -> None:
    """Temp file in the same folder, fsync, rename, fsync the folder: readers never see half a file,
    and a result that was reported written survives a kill -9 or a power cut."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=1, ensure_ascii=False, sort_keys=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def cell_file(results_dir: Path, cell_id: str) -> Path:
    return Path(results_dir) / "cells" / f"{cell_id}.json"


def save(results_dir: Path, result: dict, items: dict | None = None) -> None:
    if result.get("status") not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, got {result.get('status')!r}")
    if items is not None:  # items first: a result on disk always has its items beside it
        write_json_atomic(Path(results_dir) / "items" / f"{result['id']}.json", items)
    write_json_atomic(cell_file(results_dir, result["id"]), {"schema": SCHEMA, **result})


def load(results_dir: Path, cell_id: str) -> dict | None:
    path = cell_file(results_dir, cell_id)
    return json.loads(path.read_text("utf-8")) if path.is_file() else None


def load_items(results_dir: Path, cell_id: str) -> dict | None:
    path = Path(results_dir) / "items" / f"{cell_id}.json"
    return json.loads(path.read_text("utf-8")) if path.is_file() else None


def is_finished(results_dir: Path, cell_id: str) -> bool:
    result = load(results_dir, cell_id)
    return result is not None and result.get("status") in FINAL


def load_all(results_dir: Path) -> list[dict]:
    return [json.loads(p.read_text("utf-8")) for p in sorted((Path(results_dir) / "cells").glob("*.json"))]


def cell_ids(results_dir: Path) -> list[str]:
    """The ids of the cell results in a folder, from the file names alone (nothing parsed)."""
    return sorted(p.stem for p in (Path(results_dir) / "cells").glob("*.json"))


def quarantine(results_dir: Path, cell_id: str, why: str) -> Path:
    """Move a cell's result, items and logs to aside/<UTC timestamp>-<why>/, in the same layout; returns that folder.

    Nothing is deleted: the folder aside is itself a results folder (`harness leaderboard` reads it)."""
    results_dir = Path(results_dir)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    dest = results_dir / ASIDE / f"{stamp}-{re.sub(r'[^A-Za-z0-9._-]+', '-', why).strip('-') or 'aside'}"
    files = [cell_file(results_dir, cell_id), results_dir / "items" / f"{cell_id}.json",
             *sorted((results_dir / "logs").glob(f"{cell_id}.*"))]
    for src in (f for f in files if f.is_file()):
        target = dest / src.relative_to(results_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, target)
    return dest
