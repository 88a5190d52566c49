"""Everything one matrix cell does, in order: load, prepare, train under budget, evaluate, store.

The runner starts it in a child process (`python -m harness.cell CELL.json RESULTS_DIR`)
so a crash or an out-of-memory cannot take the matrix, or the next cell's memory
numbers, with it. The child dies with the runner (harness.procs) and marks each phase
(load, prepare, train, evaluate, points) in its progress file, where the runner's watchdog reads it.

    result = run_cell(cell, Path("results/smoke"))
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from contextlib import ExitStack
from datetime import datetime, timezone
from pathlib import Path

from harness import env, models, procs, snapshots, store, tracking
from harness.matrix import BASE, Cell, resolve_params
from harness.points import evaluate_points
from harness.timing import SPAWNED_ENV, Clock


def _artifact_bytes(strategy, model) -> int:
    """Size on disk of what the strategy saves (only what it trained)."""
    tmp = Path(tempfile.mkdtemp(prefix="harness-artifact-"))
    try:
        strategy.save(model, tmp)
        return sum(f.stat().st_size for f in tmp.rglob("*") if f.is_file())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _phase(progress_file: Path | None, name: str) -> None:
    """Tell the runner's watchdog a phase started (rank 0 only: one clock per cell)."""
    if progress_file and int(os.environ.get("RANK", "0")) == 0:
        with open(progress_file, "a", encoding="utf-8") as f:
            f.write(json.dumps({"phase": name}) + "\n")


def _suite_line(progress_file: Path | None):
    """What the runner's progress shows for each suite: {"suite", "index", "total", "seconds" (None at its start)}."""
    def on_suite(name: str, index: int, total: int, seconds: float | None) -> None:
        if progress_file and int(os.environ.get("RANK", "0")) == 0:
            with open(progress_file, "a", encoding="utf-8") as f:
                f.write(json.dumps({"suite": name, "index": index, "total": total, "seconds": seconds}) + "\n")
    return on_suite


def run_cell(cell: Cell, results_dir: Path, progress=print, progress_file: Path | None = None,
             spawned_at: float | None = None) -> dict | None:
    """The cell's result (also stored); None on the non-zero ranks of a torchrun cell, which only train.

    `spawned_at` (time.time() when the runner started this process) makes the interpreter's start and
    imports the first phase of result["timing"] (harness.timing)."""
    with ExitStack() as cleanup:  # scratch folders (the points' snapshots) go however the cell ends
        return _run_cell(cell, results_dir, progress, progress_file, spawned_at, cleanup)


def _run_cell(cell: Cell, results_dir: Path, progress, progress_file: Path | None, spawned_at: float | None,
              cleanup: ExitStack) -> dict | None:
    clock = Clock(spawned_at)
    with clock.phase("start", "imports"):
        from transformers import set_seed

        import strategies  # noqa: F401  (registers the built-ins)
        from harness.budget import MemoryMonitor
        from harness.data.prepare import epochs, prepare_train
        from harness.distributed import NotSharded
        from harness.evals import inference, sanity
        from harness.evals.evaluate import run_suites
        from harness.evals.perplexity import fingerprint
        from harness.tuning import fit
        from strategies.base import STRATEGIES, count_trainable

    root = Path(cell.root)
    result = {"id": cell.id, "label": cell.label, "matrix": cell.matrix, "cell": cell.model_dump(mode="json"),
              "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "env": env.capture()}
    set_seed(cell.seed)
    strategy = params = start = scratch = None
    taken: list[dict] = []
    if cell.strategy != BASE:
        strategy = STRATEGIES.get(cell.strategy)()
        params = resolve_params(strategy.Params, cell.params)
    load_kwargs = strategy.load_kwargs(params) if strategy is not None else {}  # the base cell loads as configured
    memory = MemoryMonitor().start() if strategy else None  # baseline before the weights, not the libraries
    _phase(progress_file, "load")
    with clock.phase("load"):
        model, tok = models.load(cell.model, root, **load_kwargs)
        if strategy is None:  # a trained model reaches the GPU through the Trainer; the base cell only evaluates
            model = models.to_accelerator(model)
    with clock.phase("sanity", "base references"):  # before prepare changes weights
        base_logits = sanity.base_logits(model, tok) if strategy is not None else None
        base_generations = sanity.base_generations(model, tok) if strategy is not None else None
    result["total_params"] = sum(p.numel() for p in model.parameters())
    result["tokenizer"] = fingerprint(tok)  # perplexity compares only within one tokenizer (harness compare)
    if note := models.caveat(cell.model, root):  # carried to the leaderboard and the gate's verdict
        result["model_caveat"] = note
    status, reason = "ok", None
    if strategy is None:
        result["trainable_params"] = 0
    else:
        if reason := strategy.check(model, params):
            return _finish(results_dir, result, "not_applicable", reason, clock)
        _phase(progress_file, "prepare")
        with clock.phase("prepare"):
            model = strategy.prepare(model, params)
        result["trainable_params"] = count_trainable(model)
        if cell.eval.checkpoints or cell.eval.interpolate:  # the prepared model's trained part: harness.points
            scratch = Path(tempfile.mkdtemp(prefix="harness-points-"))
            cleanup.callback(shutil.rmtree, scratch, ignore_errors=True)
            with clock.phase("points", "snapshot"), memory.aside():
                start = snapshots.snapshot(model, scratch / "start.safetensors")
        _phase(progress_file, "train")
        with clock.phase("data"):
            examples = prepare_train(cell, tok, results_dir, progress)
        progress(f"  train {cell.label}: {len(examples)} examples, {cell.budget['tokens']:,} tokens")
        try:
            model, usage, trials = fit(cell, strategy, params, model, tok, examples,
                                       lambda: models.load(cell.model, root, **load_kwargs)[0], memory,
                                       progress_file, clock=clock, packing=cell.data.packing,
                                       tracking=tracking.trainer_kwargs(results_dir, cell.label),
                                       snapshot_dir=(scratch / "checkpoints" if scratch and cell.eval.checkpoints
                                                     else None))
        except NotSharded as e:  # every rank found it; rank 0 stores the reason
            if int(os.environ.get("RANK", "0")) != 0:
                return None
            return _finish(results_dir, result, "failed", f"train.distributed {cell.train.backend}: {e}", clock)
        taken = usage.pop("snapshots", [])
        usage["epochs"] = epochs(results_dir, cell)
        if int(os.environ.get("RANK", "0")) != 0:
            return None  # rank 0 evaluates and stores; the others only helped train
        result["usage"] = usage
        if trials:
            result["lr_trials"] = trials
        with clock.phase("artifact"):
            result["artifact_bytes"] = _artifact_bytes(strategy, model)
        if usage["stopped_by"] == "nan":
            return _finish(results_dir, result, "diverged", "loss became NaN/inf during training", clock)
        if usage["stopped_by"] in ("time", "memory"):
            status, reason = "over_budget", f"stopped by the {usage['stopped_by']} cap before the token budget"
    _phase(progress_file, "evaluate")
    metrics, items = run_suites(model, tok, cell, progress, clock=clock, on_suite=_suite_line(progress_file))
    result["metrics"] = metrics
    # what eval.bf16 resolved to here: unset, it is bf16 on a GPU and float32 on CPU under the same cell id
    result["eval_precision"] = "bf16" if models.uses_bf16(cell.eval.bf16, next(model.parameters()).device) else "fp32"
    if start is not None:  # the checkpoints and interpolations, the model left as trained
        _phase(progress_file, "points")
        final = snapshots.snapshot(model, names=snapshots.names(start))  # a reloaded save trains nothing
        result["points"], items["_points"] = evaluate_points(model, tok, cell, strategy, start, final, taken, clock,
                                                             progress)
    if cell.eval.inference:
        with clock.phase("inference"):
            try:
                result["inference"] = inference.measure(model, tok, cell)
            except Exception as e:  # a side measurement: its failure must not cost the cell its scores
                result["inference"] = {"error": f"{type(e).__name__}: {e}"}
                progress(f"  WARNING inference cost not measured: {result['inference']['error']}")
    with clock.phase("sanity"):
        result["sanity"] = sanity.check(model, tok, cell.model, strategy is not None, base_logits, base_generations)
    if failure := result["sanity"].get("failure"):  # generated scores are not this model's: not a result
        progress(f"  FAILED {failure}")
        status, reason = "failed", f"{reason}; {failure}" if reason else failure
    if warning := result["sanity"].get("warning"):
        progress(f"  WARNING {warning}")
        reason = f"{reason}; {warning}" if reason else warning
    return _finish(results_dir, result, status, reason, clock, items)


def _finish(results_dir: Path, result: dict, status: str, reason: str | None, clock: Clock,
            items: dict | None = None) -> dict:
    items_sha = None
    if items is not None:  # items first (as store.save does), so that their writing is timed too
        with clock.phase("store"):
            items_sha = store.save_items(results_dir, result["id"], items)
    timing = clock.record()
    result.update(status=status, reason=reason, wall_seconds=round(timing["wall_seconds"], 1), timing=timing,
                  finished_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    result["env"]["load_end"] = env.load_average()
    store.save(results_dir, result, items_sha256=items_sha)
    return result


def main(argv: list[str] | None = None) -> int:
    procs.die_with_parent()
    cell_json, results_dir = (argv or sys.argv[1:])[:2]
    procs.hold_writer_lock(Path(results_dir))
    cell = Cell.model_validate_json(Path(cell_json).read_text("utf-8"))
    progress_file = os.environ.get("HARNESS_PROGRESS_FILE")
    spawned = os.environ.get(SPAWNED_ENV)
    run_cell(cell, Path(results_dir), progress_file=Path(progress_file) if progress_file else None,
             spawned_at=float(spawned) if spawned else None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
