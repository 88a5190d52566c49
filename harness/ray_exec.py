"""Run a matrix's cells as Ray tasks (the optional `ray` extra): one task per cell, each still its own process.

A task asks Ray for the GPUs its cell trains on (train.nproc_per_node, where CUDA exists)
and one CPU, and its child process gets OMP/MKL threads = that CPU count, so concurrent
cells do not oversubscribe the cores. Against a running cluster set RAY_ADDRESS; without
one a local Ray starts with this machine's cores.

    run_cells_on_ray(cells, Path("results/smoke"), run_isolated, failed, print)

The runner hands in how one cell runs in its child process and how a lost cell is recorded,
so this module never imports the runner (which imports it).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from harness.matrix import Cell

REPO = Path(__file__).resolve().parent.parent
CPUS_PER_CELL = 1


def _run_one(cell_json: str, results_dir: str, threads: int, run_isolated: Callable) -> dict:
    cell = Cell.model_validate_json(cell_json)
    result = run_isolated(cell, Path(results_dir), threads=threads)
    return {"id": result["id"], "status": result["status"], "reason": result.get("reason"),
            "wall_seconds": result.get("wall_seconds", 0)}


def run_cells_on_ray(cells: list[Cell], results_dir: Path, run_isolated: Callable, failed: Callable,
                     progress=print) -> None:
    """Each cell as a Ray task calling `run_isolated(cell, results_dir, threads=...)`; a lost task is `failed(...)`."""
    try:
        import ray
    except ImportError:
        raise RuntimeError("--executor ray needs Ray: pip install 'harness[ray]'") from None
    import torch

    started_here = not ray.is_initialized()
    if started_here:  # workers import harness from this checkout, wherever they start
        path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
        ray.init(address=os.environ.get("RAY_ADDRESS"), include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"PYTHONPATH": path}})
    gpu = torch.cuda.is_available()
    task = ray.remote(_run_one)
    pending = {}
    for cell in cells:
        opts = {"num_cpus": CPUS_PER_CELL, "num_gpus": cell.train.nproc_per_node if gpu else 0, "max_retries": 0}
        ref = task.options(**opts).remote(cell.model_dump_json(), str(results_dir.resolve()), CPUS_PER_CELL,
                                          run_isolated)
        pending[ref] = cell
    try:
        done = 0
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            cell = pending.pop(ready[0])
            done += 1
            try:
                result = ray.get(ready[0])
            except Exception as e:  # the worker itself died: the cell is failed, the matrix goes on
                result = failed(cell, results_dir, f"ray task failed: {type(e).__name__}: {e}"[:600], time.time())
            progress(f"[{done}/{len(cells)}] {cell.label} ({cell.id}) -> {result['status']} in "
                     f"{result['wall_seconds']:.0f}s" + (f": {result['reason']}" if result.get("reason") else ""))
    finally:
        if started_here:
            ray.shutdown()
