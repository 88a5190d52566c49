"""Run a matrix: skip finished cells, run each remaining cell in its own process, never raise past a cell.

One `harness run` owns a results folder at a time (a lock); finished results are never
rewritten, and a run killed at any point resumes by re-running only the unfinished cells.
A stored result that does not verify (store.damage) is named, moved aside and run again.
A child that outlives a phase's time (budget.max_seconds, see `phase_limit`) is killed and
recorded over_budget with the phase named; the child dies with the runner (harness.procs).
Single-process cells fork from the run's zygote (harness.zygote), which imported the libraries once.
Cells run one after another here (`executor="local"`) or as Ray tasks (`executor="ray"`,
the optional `ray` extra); a cell with `train.nproc_per_node > 1` trains under torchrun.

    summary = run_matrix(spec, root=Path("suites"), results_dir=Path("results/smoke"))
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from harness import env, procs, store
from harness.config import MatrixSpec
from harness.matrix import BASE, Cell, expand
from harness.timing import SPAWNED_ENV

LOCK = ".lock"
# A phase may overrun max_seconds by this much before the watchdog kills it: training stops itself at the
# first step past the cap, and a loaded machine must not turn that overshoot into a kill.
GRACE_FACTOR, GRACE_SECONDS = 0.5, 10.0
START_SECONDS = 300.0  # importing torch and the libraries: not the cell's work, but not for ever either
# A trained cell whose perplexity is more than this many times its base model's has blown up (BitFit at lr 1e8:
# 3.6e7 against 1.6), not forgotten: fine-tuning that works moves the tiny world's general perplexity by well
# under 2x. Such a cell is recorded `diverged`, its metrics kept.
EXPLODE_FACTOR = 10.0


class FolderLocked(RuntimeError):
    """Another `harness run` is writing to the same results folder."""


@contextmanager
def results_lock(results_dir: Path):
    """Hold results_dir/.lock for the whole run (an OS lock: a killed holder releases it at once)."""
    from filelock import FileLock, Timeout

    owner = results_dir / f"{LOCK}.owner"
    lock = FileLock(str(results_dir / LOCK), timeout=0)
    try:
        results_dir.mkdir(parents=True, exist_ok=True)
        lock.acquire()
    except Timeout:
        holder = owner.read_text("utf-8").strip() if owner.is_file() else "unknown"
        raise FolderLocked(f"{results_dir}: another harness run (pid {holder}) is using this results folder; "
                           f"wait for it, or pass a different --out") from None
    except OSError as e:
        raise store.StoreError(f"{results_dir}: cannot write the results folder ({e.strerror or e}); "
                               "is it read-only or the disk full? Pass a writable --out") from None
    try:
        try:
            owner.write_text(str(os.getpid()), encoding="utf-8")
            procs.wait_for_writers(results_dir)  # a cell of a killed run may take a moment to die
        except TimeoutError as e:
            raise FolderLocked(str(e)) from None
        except OSError as e:
            raise store.StoreError(f"{results_dir}: cannot write the results folder ({e.strerror or e}); "
                                   "is it read-only or the disk full? Pass a writable --out") from None
        for tmp in [*results_dir.glob("cells/.*.tmp"), *results_dir.glob("items/.*.tmp")]:
            tmp.unlink(missing_ok=True)  # half-written by a killed run; the finished files are untouched
        yield
    finally:
        owner.unlink(missing_ok=True)
        lock.release()


def _failed(cell: Cell, results_dir: Path, reason: str, started: float, status: str = "failed") -> dict:
    result = {"id": cell.id, "label": cell.label, "matrix": cell.matrix, "cell": cell.model_dump(mode="json"),
              "status": status, "reason": reason, "wall_seconds": round(time.time() - started, 1),
              "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "env": env.capture()}
    store.save(results_dir, result)
    return result


def cell_command(cell: Cell, spec_file: Path, results_dir: Path) -> list[str]:
    """`python -m harness.cell ...`, under torchrun when the cell trains on several processes.

    torchrun starts through harness.procs so that it, like each of its workers, dies with its parent.
    """
    args = ["-m", "harness.cell", str(spec_file), str(results_dir)]
    if under_torchrun(cell):
        dist = cell.train.distributed
        if dist and dist.nnodes > 1:  # the same command on every node; c10d's rendezvous numbers the nodes
            where = [f"--nnodes={dist.nnodes}", "--rdzv_backend=c10d", f"--rdzv_endpoint={dist.rdzv_endpoint}",
                     f"--rdzv_id={cell.id}"]
        else:
            where = ["--standalone"]
        return [sys.executable, "-m", "harness.procs", "torch.distributed.run", *where,
                f"--nproc_per_node={cell.train.nproc_per_node}", *args]
    return [sys.executable, *args]


def under_torchrun(cell: Cell) -> bool:
    """The cell trains on several processes (torchrun); every other cell is one process."""
    return cell.train.world > 1 and cell.strategy != BASE


def _start_child(cell: Cell, spec_file: Path, results_dir: Path, child_env: dict, log: Path, zygote):
    """The cell's process: forked from the run's zygote (harness/zygote.py) where there is one and the cell
    trains in one process, else `python -m harness.cell` (under torchrun for several)."""
    if zygote is not None and not under_torchrun(cell):
        try:
            return zygote.start([str(spec_file), str(results_dir)], child_env, log)
        except OSError:
            pass  # the zygote is gone: the cell starts its own interpreter
    with log.open("w", encoding="utf-8") as out:
        return subprocess.Popen(cell_command(cell, spec_file, results_dir), stdout=out, stderr=subprocess.STDOUT,
                                env=child_env)


def run_isolated(cell: Cell, results_dir: Path, on_progress=None, threads: int | None = None, zygote=None) -> dict:
    """The cell in a child process; its output goes to logs/<id>.log, a crash becomes a `failed` result.

    The child appends JSON lines to logs/<id>.progress.jsonl: `{"phase": ...}` when a phase
    starts (the watchdog's clock), `{"tokens", "loss", ...}` while it trains and `{"suite", "index",
    "total", "seconds"}` as each eval suite starts (seconds None) and ends (`on_progress` gets those two). The
    child is killed if this process stops waiting for it (Ctrl-C, an error).
    """
    started = time.time()
    logs = results_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    spec_file = logs / f"{cell.id}.cell.json"
    spec_file.write_text(cell.model_dump_json(indent=1), encoding="utf-8")
    log = logs / f"{cell.id}.log"
    progress_file = logs / f"{cell.id}.progress.jsonl"
    progress_file.unlink(missing_ok=True)
    child_env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HARNESS_PROGRESS_FILE": str(progress_file),
                 procs.PARENT_ENV: str(os.getpid())}
    if threads:
        child_env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    child_env[SPAWNED_ENV] = repr(time.time())  # the cell's timing starts here: its imports count
    child = _start_child(cell, spec_file, results_dir, child_env, log, zygote)
    try:
        code, overrun = _wait(child, progress_file, on_progress, cell)
    finally:
        if child.poll() is None:  # interrupted, or the watchdog fired: no child outlives the wait
            child.kill()
            child.wait()
    if overrun:
        phase, seconds = overrun
        return _failed(cell, results_dir, f"watchdog: the {phase} phase ran {seconds:.0f}s, past budget.max_seconds "
                                          f"{cell.budget['max_seconds']:g}s (limit {phase_limit(cell, phase):.0f}s "
                                          f"with grace); killed (log: {log})", started, status="over_budget")
    result = store.load(results_dir, cell.id)
    if code == 0 and result is not None and result.get("finished_at", "") >= _iso(started):
        return result
    nodes = cell.train.distributed.nnodes if cell.train.distributed else 1
    if code == 0 and nodes > 1:  # every rank here exited cleanly; rank 0, which stores, ran on another node
        return _failed(cell, results_dir, f"trained here as one of {nodes} nodes, without rank 0: the node whose "
                                          "process became rank 0 (c10d numbers the nodes as they join) stores the "
                                          f"cell's result in its own results folder (log: {log})", started)
    tail = [ln for ln in log.read_text("utf-8", errors="replace").splitlines() if ln.strip()][-3:]
    why = "killed (out of memory?)" if code in (-9, 137) else f"exit status {code}"
    return _failed(cell, results_dir, f"crashed, {why}: {' | '.join(tail)[-600:]} (log: {log})", started)


def phase_limit(cell: Cell, phase: str) -> float | None:
    """Seconds a phase of the cell may run before the watchdog kills it; None without budget.max_seconds.

    Every phase gets max_seconds (training: per learning-rate trial, extensions included) plus grace; start-up
    (imports, before the first phase line) gets at least START_SECONDS.
    """
    cap = cell.budget.get("max_seconds")
    if not cap:
        return None
    if phase == "train":  # every trial the search may run: the grid and its extensions
        cap *= len(cell.lr_multipliers or [1]) + (cell.tuning.max_extensions if cell.lr_multipliers else 0)
    limit = cap * (1 + GRACE_FACTOR) + GRACE_SECONDS
    return max(limit, START_SECONDS) if phase == "start" else limit


def _wait(child: subprocess.Popen, progress_file: Path, on_progress, cell: Cell) -> tuple[int, tuple | None]:
    """Wait for the child, tailing its progress lines; (exit code, (phase, seconds) if the watchdog fired)."""
    offset, phase, since = 0, "start", time.monotonic()
    while True:
        code = child.poll()
        if progress_file.is_file():
            with progress_file.open("rb") as f:
                f.seek(offset)
                chunk = f.read()
            complete = chunk[:chunk.rfind(b"\n") + 1]  # a line still being written waits for the next look
            offset += len(complete)
            for line in map(json.loads, complete.decode("utf-8").splitlines()):
                if "phase" in line:
                    phase, since = line["phase"], time.monotonic()
                elif on_progress:
                    on_progress(line)
        if code is not None:
            return code, None
        limit = phase_limit(cell, phase)
        if limit is not None and time.monotonic() - since > limit:
            child.kill()
            child.wait()
            return child.returncode, (phase, time.monotonic() - since)
        time.sleep(0.3)


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="seconds")


def run_matrix(spec: MatrixSpec, root: Path, results_dir: Path, rerun: bool = False, isolate: bool = True,
               progress=print, executor: str = "local", base_cache: bool = True) -> list[dict]:
    """Every cell of the matrix has a result on disk when this returns (finished ones are reused).

    `base_cache` (and the matrix's eval.base_cache): a base cell evaluated in any matrix before, on the same
    model files, data files, eval config and versions, is copied from harness.basecache instead of run."""
    from harness import basecache

    cells = expand(spec, root)
    with results_lock(results_dir):
        set_aside_damaged(results_dir, progress)  # damaged first: a damaged stale result is named as damaged
        supersede(results_dir, {c.id for c in cells}, progress)
        todo = [c for c in cells if rerun or not store.is_finished(results_dir, c.id)]
        keys = {}
        if base_cache and spec.eval.base_cache:
            todo, keys = basecache.reuse(todo, results_dir, rerun, progress)
        progress(f"matrix {spec.name}: {len(cells)} cells, {len(cells) - len(todo)} already finished or reused, "
                 f"{len(todo)} to run -> {results_dir}")
        if executor == "ray":
            from harness.ray_exec import run_cells_on_ray

            # the searches first: a seed that trains at a search's chosen rate waits for it
            run_cells_on_ray([c for c in todo if not c.lr_from], results_dir, run_isolated, _failed, progress)
            later = [resolve_rate(c, results_dir) for c in todo if c.lr_from]
            run_cells_on_ray([c for c, why in later if not why], results_dir, run_isolated, _failed, progress)
            for c, why in later:
                if why:
                    _failed(c, results_dir, why, time.time())
        elif executor == "local":
            _run_local(todo, results_dir, isolate, progress)
        else:
            raise ValueError(f"unknown executor {executor!r} (local or ray)")
        basecache.keep(keys, results_dir, progress)
        flag_explosions(cells, todo, results_dir, progress)
    return [store.load(results_dir, c.id) for c in cells]


def resolve_rate(cell: Cell, results_dir: Path) -> tuple[Cell, str | None]:
    """A seed that trains at its search's chosen rate (cell.lr_from, tuning.seeds `first`), with that multiplier
    filled in; (cell, why not) when the search has no usable result yet. Other cells pass through."""
    if not cell.lr_from:
        return cell, None
    source = store.load(results_dir, cell.lr_from)
    chosen = store.chosen_trial(source or {})
    if chosen is None:
        status = source["status"] if source else "not run"
        return cell, (f"its learning rate is the one the search of cell {cell.lr_from} (the first seed) chooses, "
                      f"and that cell has no chosen trial (status {status}); run it first")
    return cell.model_copy(update={"lr_chosen": chosen["multiplier"]}), None


def set_aside_damaged(results_dir: Path, progress=print) -> list[str]:
    """Move every stored result that does not verify to aside/ (named, never deleted); their cells run again."""
    moved = []
    for cell_id in store.stored_ids(results_dir):
        if bad := store.damage(results_dir, cell_id):
            dest = store.quarantine(results_dir, cell_id, bad.code)
            progress(f"damaged result: {bad.message}; moved to {dest}, the cell runs again")
            moved.append(cell_id)
    return moved


def explosion(metrics: dict, base: dict, factor: float = EXPLODE_FACTOR) -> str | None:
    """Why these metrics exploded against the base cell's (perplexity beyond `factor` times, or not finite)."""
    found = []
    for name, m in metrics.items():
        ref = (base.get(name) or {}).get("value")
        if not name.startswith("ppl_") or not isinstance(ref, (int, float)) or not math.isfinite(ref):
            continue
        value = m.get("value")
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            found.append(f"{name} is {value} (base {ref:.4g})")
        elif value > factor * ref:
            found.append(f"{name} {value:.4g} is {value / ref:.3g}x the base model's {ref:.4g}")
    return (f"{'; '.join(found)} (more than {factor:g}x the base): training blew the model up") if found else None


def flag_explosions(cells: list[Cell], ran: list[Cell], results_dir: Path, progress=print) -> None:
    """A trained cell of this run whose perplexity exploded against its base cell's becomes `diverged`."""
    bases = {c.model.id: store.load(results_dir, c.id) for c in cells if c.strategy == BASE}
    for cell in ran:
        base = bases.get(cell.model.id)
        result = store.load(results_dir, cell.id)
        if cell.strategy == BASE or not base or base["status"] != "ok" or not result or result["status"] != "ok":
            continue
        if why := explosion(result.get("metrics") or {}, base.get("metrics") or {}):
            progress(f"      {cell.label}: diverged: {why}")
            reason = f"{why}; {result['reason']}" if result.get("reason") else why
            store.save(results_dir, {**result, "status": "diverged", "reason": reason},
                       store.load_items(results_dir, cell.id))
def supersede(results_dir: Path, current: set[str], progress=print) -> list[Path]:
    """Move aside every result that is not one of the matrix's cells now (another version of the code or packages,
    another config), so the folder holds one consistent set: nothing from another run is averaged in as a seed."""
    stale = [i for i in store.stored_ids(results_dir) if i not in current]
    folders = list(dict.fromkeys(store.quarantine(results_dir, i, "superseded") for i in stale))
    if stale:
        progress(f"moved {len(stale)} result(s) of another version or config aside -> "
                 + ", ".join(str(f) for f in folders))
    return folders


def _run_local(todo: list[Cell], results_dir: Path, isolate: bool, progress) -> None:
    from tqdm import tqdm

    from harness.zygote import start_zygote

    quiet = not sys.stderr.isatty()
    say = progress if quiet or progress is not print else tqdm.write
    bar = tqdm(total=len(todo), desc="matrix", unit="cell", position=0, disable=quiet)
    forked = isolate and any(not under_torchrun(c) for c in todo)
    if forked:
        (results_dir / "logs").mkdir(parents=True, exist_ok=True)
    zygote = start_zygote(results_dir / "logs" / "zygote.log") if forked else None  # one per run: cells fork from it
    try:
        for i, cell in enumerate(todo, 1):
            say(f"[{i}/{len(todo)}] {cell.label} ({cell.id})")
            result = _run_one(cell, results_dir, isolate, progress, quiet, say, zygote)
            bar.update(1)
            say(f"      -> {result['status']} in {result.get('wall_seconds', 0):.0f}s"
                + (f": {result['reason']}" if result.get("reason") else ""))
    finally:
        if zygote is not None:
            zygote.close()
        bar.close()


def _run_one(cell: Cell, results_dir: Path, isolate: bool, progress, quiet: bool, say, zygote) -> dict:
    """One cell with its token bar and (on a terminal) its suite bar; a failure becomes a result."""
    from tqdm import tqdm

    cell_bar = tqdm(total=cell.budget["tokens"], desc=cell.label[:24], unit="tok", position=1, leave=False,
                    disable=quiet)
    suite_bar = None

    def on_progress(line):
        nonlocal suite_bar
        if "suite" in line:  # a bar of its own on a terminal; in a log file, one line per suite end
            if suite_bar is None:
                suite_bar = tqdm(total=line["total"], desc="eval", unit="suite", position=2, leave=False,
                                 disable=quiet)
            if line["seconds"] is None:
                suite_bar.set_postfix_str(line["suite"], refresh=True)
            else:
                suite_bar.update(1)
                if quiet:
                    say(f"      eval {line['suite']} ({line['index'] + 1}/{line['total']}): "
                        f"{line['seconds']:.1f}s")
            return
        cell_bar.n = line["tokens"]
        cell_bar.set_postfix_str(f"{line['trial']} loss={line['loss']:.3f}" if line.get("loss") is not None
                                 else line["trial"], refresh=True)

    started = time.time()
    cell, why = resolve_rate(cell, results_dir)
    if why:
        cell_bar.close()
        return _failed(cell, results_dir, why, started)
    try:
        if isolate:
            return run_isolated(cell, results_dir, on_progress, zygote=zygote)
        from harness.cell import run_cell

        try:
            return run_cell(cell, results_dir, progress)
        except Exception as e:  # a cell never takes the matrix down
            return _failed(cell, results_dir, f"{type(e).__name__}: {e}", started)
    finally:
        cell_bar.close()
        if suite_bar is not None:
            suite_bar.close()
