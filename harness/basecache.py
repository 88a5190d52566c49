"""Base-model evaluations reused across matrices: an entry per evaluation under $HARNESS_HOME/base-cache/<key>/.

A base cell's numbers depend on the model and the evaluation only (matrix.evaluation), so a
matrix whose base cell matches one already evaluated elsewhere copies that result and its
items instead of running the model. The key is the sha256 of

- the base cell's id: its model spec, eval config, data spec and package versions (matrix.fingerprint());
- the content of every file of the model's folder (weights, tokenizer, config);
- the content of every data file the suites read: the data source (validation and test splits),
  general text, safety sets, refusal judge, benchmark data folders;
- the harness's own source files, so that a change to the code misses.

Never the model name alone (lm-eval's #2715). An evaluation that reads anything from the hub
(a hub dataset, a hub benchmark, a model not in the local hub cache) has no key and is not
cached. File hashes are kept in `hashes.json` by (path, size, mtime), so a large model is
hashed once. An entry is laid out as a results folder (cells/<id>.json, items/<id>.json), so
store.damage checks it; a damaged entry is ignored, and the next evaluation replaces it.

    cells, keys = reuse(todo, results_dir)     # base cells with a verified entry are copied in, not run
    keep(keys, results_dir)                    # after the run: each base evaluated now becomes an entry
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path

from harness import matrix, store
from harness.matrix import BASE, Cell
from harness.paths import home, resolve_data, sha256

HASHES = "hashes.json"
CODE = Path(__file__).resolve().parent
CODE_SUFFIXES = (".py", ".yaml", ".yml", ".j2")


class NotCacheable(ValueError):
    """The evaluation reads something that is not a local file (the message says what): it has no key."""


def folder() -> Path:
    return home() / "base-cache"


def _files(path: Path) -> list[Path]:
    """A file, or every file under a folder (sorted; names starting with '.' are caches and locks, not data)."""
    if path.is_file():
        return [path]
    return sorted(f for f in path.rglob("*") if f.is_file()
                  and not any(part.startswith(".") for part in f.relative_to(path).parts))


class _Hashes:
    """sha256 per (resolved path, size, mtime_ns), kept on disk between runs."""

    def __init__(self, path: Path):
        self.path, self.changed = path, False
        try:
            self.known = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError):  # none yet, or damaged: hashes are recomputed
            self.known = {}

    def __call__(self, file: Path) -> str:
        st = file.stat()
        name = f"{file.resolve()}|{st.st_size}|{st.st_mtime_ns}"
        if name not in self.known:
            self.known[name], self.changed = sha256(file), True
        return self.known[name]

    def save(self) -> None:
        if self.changed:
            store.write_json_atomic(self.path, self.known)


def _model_folder(cell: Cell) -> Path | None:
    """The local folder the model loads from (a hub id: its snapshot in the local hub cache), or None."""
    from harness.models import prepare

    where = Path(prepare(cell.model, Path(cell.root), progress=lambda *_: None))
    if where.is_dir():
        return where
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(cell.model.id, local_files_only=True))
    except Exception:  # not cached locally (or not a hub id): nothing to fingerprint
        return None


def inputs(cell: Cell) -> dict[str, Path]:
    """{what: local path} of everything the base cell's evaluation reads; NotCacheable when something is remote."""
    root, ev = Path(cell.root), cell.eval
    model = _model_folder(cell)
    if model is None:
        raise NotCacheable(f"model {cell.model.id!r} is not a local folder or in the local hub cache")
    if cell.data.hub:
        raise NotCacheable(f"data.hub {cell.data.hub!r} is read from the hub")
    found = {"model": model, "data": resolve_data(cell.data.path, root), "code": CODE}
    for key in ("general_text", "safety", "refusal_judge"):
        if getattr(ev, key):
            found[f"eval.{key}"] = resolve_data(getattr(ev, key), root)
    for task in (ev.benchmarks.tasks if ev.benchmarks and "benchmarks" in ev.suites else []):
        if not task.data:
            raise NotCacheable(f"benchmark {task.task!r} is read from the hub")
        found[f"benchmark.{task.name}"] = resolve_data(task.data, root)
    return found


def key(cell: Cell) -> str:
    """The cache key of a base cell's evaluation (NotCacheable when it reads something that is not a local file)."""
    found = inputs(cell)
    hashes = _Hashes(folder() / HASHES)
    parts: dict = {"cell": cell.id, "versions": matrix.fingerprint()}
    for what, path in found.items():
        files = [f for f in _files(path) if what != "code" or (f.suffix in CODE_SUFFIXES and "zoo" not in
                                                                 f.relative_to(path).parts)]
        parts[what] = [[f.relative_to(path).as_posix() if f != path else f.name, hashes(f)] for f in files]
    folder().mkdir(parents=True, exist_ok=True)
    hashes.save()
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]


def lookup(cell: Cell, cache_key: str, progress=print) -> Path | None:
    """The entry holding this evaluation, verified (store.damage), or None."""
    entry = folder() / cache_key
    if not store.cell_file(entry, cell.id).is_file():
        return None
    if bad := store.damage(entry, cell.id):
        progress(f"base cache: {bad.message}; ignored, the base model is evaluated again and the entry replaced")
        return None
    result = store.load(entry, cell.id)
    return entry if result and result.get("status") == "ok" else None


def copy_in(cell: Cell, cache_key: str, entry: Path, results_dir: Path) -> dict:
    """The cached result, as this matrix's base cell, with its items file byte for byte (atomically, via store)."""
    cached = store.load(entry, cell.id)
    items = store.items_file(entry, cell.id).read_text("utf-8")
    reused = {"key": cache_key, "matrix": cached.get("matrix"),
              "at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    result = {**cached, "matrix": cell.matrix, "label": cell.label, "cell": cell.model_dump(mode="json"),
              "reused_from": reused}
    store.save(results_dir, result, items)
    return result


def put(cell_id: str, cache_key: str, results_dir: Path) -> Path | None:
    """Store a base cell's verified `ok` result (and items) from a results folder as the entry for `cache_key`."""
    result = store.load(results_dir, cell_id)
    if not result or result.get("status") != "ok" or result.get("reused_from") or store.damage(results_dir, cell_id):
        return None
    entry, tmp = folder() / cache_key, folder() / f".{cache_key}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    store.save(tmp, result, store.items_file(results_dir, cell_id).read_text("utf-8"))
    shutil.rmtree(entry, ignore_errors=True)  # a damaged or older entry of the same key
    os.replace(tmp, entry)
    return entry


def reuse(todo: list[Cell], results_dir: Path, rerun: bool = False,
          progress=print) -> tuple[list[Cell], dict[str, str]]:
    """(the cells still to run, {base cell id: cache key} of the base cells to store once evaluated).

    A base cell with a verified entry is copied into `results_dir` and leaves the list; with `rerun`
    nothing is reused, but each base evaluated now replaces its entry."""
    remaining, keys = [], {}
    for cell in todo:
        if cell.strategy != BASE:
            remaining.append(cell)
            continue
        try:
            cache_key = key(cell)
        except NotCacheable as e:
            progress(f"base cache: {cell.label} of {cell.model.id} is not cached: {e}")
            remaining.append(cell)
            continue
        entry = None if rerun else lookup(cell, cache_key, progress)
        if entry is None:
            keys[cell.id] = cache_key
            remaining.append(cell)
            continue
        result = copy_in(cell, cache_key, entry, results_dir)
        progress(f"base cache: {cell.label} ({cell.id}) reused from matrix {result['reused_from']['matrix']} "
                 f"(cache key {cache_key[:12]}); not evaluated again")
    return remaining, keys


def keep(keys: dict[str, str], results_dir: Path, progress=print) -> None:
    for cell_id, cache_key in keys.items():
        if entry := put(cell_id, cache_key, results_dir):
            progress(f"base cache: stored {cell_id} -> {entry}")
