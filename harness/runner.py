"""Run a matrix: skip finished cells, run each remaining cell in its own process, never raise past a cell.

    summary = run_matrix(spec, root=Path("suites"), results_dir=Path("results/smoke"))
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from harness import env, store
from harness.config import MatrixSpec
from harness.matrix import Cell, expand


def _failed(cell: Cell, results_dir: Path, reason: str, started: float) -> dict:
    result = {"id": cell.id, "label": cell.label, "matrix": cell.matrix, "cell": cell.model_dump(mode="json"),
              "status": "failed", "reason": reason, "wall_seconds": round(time.time() - started, 1),
              "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "env": env.capture()}
    store.save(results_dir, result)
    return result


def run_isolated(cell: Cell, results_dir: Path) -> dict:
    """The cell in a child process; its output goes to logs/<id>.log, a crash becomes a `failed` result."""
    started = time.time()
    logs = results_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    spec_file = logs / f"{cell.id}.cell.json"
    spec_file.write_text(cell.model_dump_json(indent=1), encoding="utf-8")
    log = logs / f"{cell.id}.log"
    child_env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    with log.open("w", encoding="utf-8") as out:
        code = subprocess.run([sys.executable, "-m", "harness.cell", str(spec_file), str(results_dir)],
                              stdout=out, stderr=subprocess.STDOUT, env=child_env).returncode
    result = store.load(results_dir, cell.id)
    if code == 0 and result is not None and result.get("finished_at", "") >= _iso(started):
        return result
    tail = [ln for ln in log.read_text("utf-8", errors="replace").splitlines() if ln.strip()][-3:]
    why = "killed (out of memory?)" if code in (-9, 137) else f"exit status {code}"
    return _failed(cell, results_dir, f"crashed, {why}: {' | '.join(tail)[-600:]} (log: {log})", started)


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="seconds")


def run_matrix(spec: MatrixSpec, root: Path, results_dir: Path, rerun: bool = False, isolate: bool = True,
               progress=print) -> list[dict]:
    """Every cell of the matrix has a result on disk when this returns (finished ones are reused)."""
    from harness.cell import run_cell

    cells = expand(spec, root)
    results_dir.mkdir(parents=True, exist_ok=True)
    todo = [c for c in cells if rerun or not store.is_finished(results_dir, c.id)]
    progress(f"matrix {spec.name}: {len(cells)} cells, {len(cells) - len(todo)} already finished, "
             f"{len(todo)} to run -> {results_dir}")
    for i, cell in enumerate(todo, 1):
        progress(f"[{i}/{len(todo)}] {cell.label} ({cell.id})")
        if isolate:
            result = run_isolated(cell, results_dir)
        else:
            started = time.time()
            try:
                result = run_cell(cell, results_dir, progress)
            except Exception as e:  # a cell never takes the matrix down
                result = _failed(cell, results_dir, f"{type(e).__name__}: {e}", started)
        progress(f"      -> {result['status']} in {result.get('wall_seconds', 0):.0f}s"
                 + (f": {result['reason']}" if result.get("reason") else ""))
    return [store.load(results_dir, c.id) for c in cells]
