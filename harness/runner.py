"""Run a matrix: skip finished cells, run each remaining cell in its own process, never raise past a cell.

One `harness run` owns a results folder at a time (a lock); finished results are never
rewritten, and a run killed at any point resumes by re-running only the unfinished cells.
Cells run one after another here (`executor="local"`) or as Ray tasks (`executor="ray"`,
the optional `ray` extra); a cell with `train.nproc_per_node > 1` trains under torchrun.

    summary = run_matrix(spec, root=Path("suites"), results_dir=Path("results/smoke"))
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from harness import env, store
from harness.config import MatrixSpec
from harness.matrix import BASE, Cell, expand

LOCK = ".lock"


class FolderLocked(RuntimeError):
    """Another `harness run` is writing to the same results folder."""


@contextmanager
def results_lock(results_dir: Path):
    """Hold results_dir/.lock for the whole run (an OS lock: a killed holder releases it at once)."""
    from filelock import FileLock, Timeout

    results_dir.mkdir(parents=True, exist_ok=True)
    owner = results_dir / f"{LOCK}.owner"
    lock = FileLock(str(results_dir / LOCK), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        holder = owner.read_text("utf-8").strip() if owner.is_file() else "unknown"
        raise FolderLocked(f"{results_dir}: another harness run (pid {holder}) is using this results folder; "
                           f"wait for it, or pass a different --out") from None
    try:
        owner.write_text(str(os.getpid()), encoding="utf-8")
        for tmp in [*results_dir.glob("cells/.*.tmp"), *results_dir.glob("items/.*.tmp")]:
            tmp.unlink(missing_ok=True)  # half-written by a killed run; the finished files are untouched
        yield
    finally:
        owner.unlink(missing_ok=True)
        lock.release()


def _failed(cell: Cell, results_dir: Path, reason: str, started: float) -> dict:
    result = {"id": cell.id, "label": cell.label, "matrix": cell.matrix, "cell": cell.model_dump(mode="json"),
              "status": "failed", "reason": reason, "wall_seconds": round(time.time() - started, 1),
              "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "env": env.capture()}
    store.save(results_dir, result)
    return result


def cell_command(cell: Cell, spec_file: Path, results_dir: Path) -> list[str]:
    """`python -m harness.cell ...`, under torchrun when the cell trains on several processes."""
    args = ["-m", "harness.cell", str(spec_file), str(results_dir)]
    if cell.train.nproc_per_node > 1 and cell.strategy != BASE:
        return [sys.executable, "-m", "torch.distributed.run", "--standalone",
                f"--nproc_per_node={cell.train.nproc_per_node}", *args]
    return [sys.executable, *args]


def run_isolated(cell: Cell, results_dir: Path, on_progress=None, threads: int | None = None) -> dict:
    """The cell in a child process; its output goes to logs/<id>.log, a crash becomes a `failed` result.

    The child appends JSON lines (tokens, loss) to logs/<id>.progress.jsonl; `on_progress`
    gets each one while the child runs.
    """
    started = time.time()
    logs = results_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    spec_file = logs / f"{cell.id}.cell.json"
    spec_file.write_text(cell.model_dump_json(indent=1), encoding="utf-8")
    log = logs / f"{cell.id}.log"
    progress_file = logs / f"{cell.id}.progress.jsonl"
    progress_file.unlink(missing_ok=True)
    child_env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HARNESS_PROGRESS_FILE": str(progress_file)}
    if threads:
        child_env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    with log.open("w", encoding="utf-8") as out:
        child = subprocess.Popen(cell_command(cell, spec_file, results_dir), stdout=out, stderr=subprocess.STDOUT,
                                 env=child_env)
        code = _wait(child, progress_file, on_progress)
    result = store.load(results_dir, cell.id)
    if code == 0 and result is not None and result.get("finished_at", "") >= _iso(started):
        return result
    tail = [ln for ln in log.read_text("utf-8", errors="replace").splitlines() if ln.strip()][-3:]
    why = "killed (out of memory?)" if code in (-9, 137) else f"exit status {code}"
    return _failed(cell, results_dir, f"crashed, {why}: {' | '.join(tail)[-600:]} (log: {log})", started)


def _wait(child: subprocess.Popen, progress_file: Path, on_progress) -> int:
    """Wait for the child, tailing its progress lines."""
    offset = 0
    while True:
        code = child.poll()
        if on_progress and progress_file.is_file():
            with progress_file.open("rb") as f:
                f.seek(offset)
                chunk = f.read()
            complete = chunk[:chunk.rfind(b"\n") + 1]  # a line still being written waits for the next look
            offset += len(complete)
            for line in complete.decode("utf-8").splitlines():
                on_progress(json.loads(line))
        if code is not None:
            return code
        time.sleep(0.3)


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="seconds")


def run_matrix(spec: MatrixSpec, root: Path, results_dir: Path, rerun: bool = False, isolate: bool = True,
               progress=print, executor: str = "local") -> list[dict]:
    """Every cell of the matrix has a result on disk when this returns (finished ones are reused)."""
    cells = expand(spec, root)
    with results_lock(results_dir):
        supersede(results_dir, {c.id for c in cells}, progress)
        todo = [c for c in cells if rerun or not store.is_finished(results_dir, c.id)]
        progress(f"matrix {spec.name}: {len(cells)} cells, {len(cells) - len(todo)} already finished, "
                 f"{len(todo)} to run -> {results_dir}")
        if executor == "ray":
            from harness.ray_exec import run_cells_on_ray

            run_cells_on_ray(todo, results_dir, progress)
        elif executor == "local":
            _run_local(todo, results_dir, isolate, progress)
        else:
            raise ValueError(f"unknown executor {executor!r} (local or ray)")
    return [store.load(results_dir, c.id) for c in cells]


def supersede(results_dir: Path, current: set[str], progress=print) -> list[Path]:
    """Move aside every result that is not one of the matrix's cells now (another version of the code or packages,
    another config), so the folder holds one consistent set: nothing from another run is averaged in as a seed."""
    stale = [i for i in store.cell_ids(results_dir) if i not in current]
    folders = list(dict.fromkeys(store.quarantine(results_dir, i, "superseded") for i in stale))
    if stale:
        progress(f"moved {len(stale)} result(s) of another version or config aside -> "
                 + ", ".join(str(f) for f in folders))
    return folders


def _run_local(todo: list[Cell], results_dir: Path, isolate: bool, progress) -> None:
    from tqdm import tqdm

    quiet = not sys.stderr.isatty()
    say = progress if quiet or progress is not print else tqdm.write
    bar = tqdm(total=len(todo), desc="matrix", unit="cell", position=0, disable=quiet)
    for i, cell in enumerate(todo, 1):
        say(f"[{i}/{len(todo)}] {cell.label} ({cell.id})")
        cell_bar = tqdm(total=cell.budget["tokens"], desc=cell.label[:24], unit="tok", position=1, leave=False,
                        disable=quiet)

        def on_progress(line, cell_bar=cell_bar):
            cell_bar.n = line["tokens"]
            cell_bar.set_postfix_str(f"{line['trial']} loss={line['loss']:.3f}" if line.get("loss") is not None
                                     else line["trial"], refresh=True)

        started = time.time()
        if isolate:
            result = run_isolated(cell, results_dir, on_progress)
        else:
            from harness.cell import run_cell

            try:
                result = run_cell(cell, results_dir, progress)
            except Exception as e:  # a cell never takes the matrix down
                result = _failed(cell, results_dir, f"{type(e).__name__}: {e}", started)
        cell_bar.close()
        bar.update(1)
        say(f"      -> {result['status']} in {result.get('wall_seconds', 0):.0f}s"
            + (f": {result['reason']}" if result.get("reason") else ""))
    bar.close()
