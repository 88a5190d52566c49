"""The plan of a matrix, printed by `harness run --dry-run`: cells, budget, seeds, LR trials, estimated memory, and
the difference each suite's headline metric can detect (harness.power).

The memory estimate (harness.memory) uses the longest training example as the padded
length, since the batch holding it sets the peak; when the data or tokenizer cannot be
read, the matrix's max_length.

Making the estimate builds each cell's model and strategy in this process, and the libraries
print as they load (bitsandbytes' kernel notice, transformers' and peft's warnings): `dry_run`
keeps that in a log, as a run keeps it in logs/zygote.log and each cell's log, and the terminal
shows the plan alone.

    print(render_plan(load_matrix(Path("matrices/smoke.yaml")), Path("matrices")))
    dry_run(spec, Path("matrices"), Path("results/smoke"))   # `harness run --dry-run`
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from harness.config import MatrixSpec
from harness.matrix import BASE, expand


def longest_example(spec: MatrixSpec, root: Path, model_id: str) -> int | None:
    from transformers import AutoTokenizer

    from harness.data import encode, load_split
    from harness.paths import resolve_model

    try:
        tok = AutoTokenizer.from_pretrained(resolve_model(model_id, root))
        rows = load_split(spec.data, root, "train")
    except (OSError, ValueError):
        return None
    if len(tok) < 2:  # transformers builds an empty tokenizer for a folder that has none
        return None
    return max(len(encode(tok, r, spec.data.max_length)["input_ids"]) for r in rows)


def render_plan(spec: MatrixSpec, root: Path) -> str:
    from harness.memory import estimate  # here, not at import: it loads transformers, peft and bitsandbytes

    cells = expand(spec, root)
    b = spec.budget
    trials = spec.tuning.lr_multipliers if spec.tuning else None
    lines = [f"matrix {spec.name}: {len(cells)} cells, seeds {spec.seeds}",
             f"budget per cell: {b.tokens:,} training tokens"
             + (f", at most {b.max_seconds:g} s" if b.max_seconds else "")
             + (f", memory cap {b.max_memory_mb:g} MB" if b.max_memory_mb else ", no memory cap"),
             (f"LR tuning: {len(trials)} trials per trained cell at x{', x'.join(f'{m:g}' for m in trials)} "
              f"its learning rate (and up to {spec.tuning.max_extensions} more past an end of the grid while the "
              f"best trial sits there), {b.tokens:,} tokens each, the best tuning-split "
              f"{spec.tuning.objective.replace('_', ' ')} kept"
              if trials else "LR tuning: none (one run per cell at its learning rate)"),
             "", f"{'id':<12}  {'cell':<36} {'lr':>8}  {'trainable':>10}  {'est. peak MB':>12}  "
                 "weights+grads+optim+activations  fits"]
    seq = {m.id: longest_example(spec, root, m.id) for m in spec.models}
    for cell in cells:
        lr = "-" if cell.strategy == BASE else f"{cell.train.learning_rate:.2g}"
        try:
            est = estimate(cell, seq_len=seq[cell.model.id])
            why = f"no readable config.json for {cell.model.id}"
        except Exception as e:  # an estimate that cannot be made must not hide the rest of the plan
            est, why = None, f"no estimate: {type(e).__name__}: {e}"[:120]
        if est is None:
            lines.append(f"{cell.id:<12}  {cell.label[:36]:<36} {lr:>8}  {'?':>10}  {'?':>12}  ({why})")
            continue
        fits = "-" if not b.max_memory_mb else ("yes" if est["total_mb"] <= b.max_memory_mb else "NO")
        parts = "+".join(f"{est[k]:.0f}" for k in ("weights_mb", "gradients_mb", "optimizer_mb", "activations_mb"))
        buffers = " + ".join(f"{k[:-3].replace('_', ' ')} {est[k]:.0f}" for k in ("unsharded_mb", "comm_buffers_mb")
                             if est[k])
        per_rank = (f"  (per rank of {est['world']}; "
                    + (f"sharded: {', '.join(k[:-3] for k in est['sharded'])}" if est["sharded"] else "full copies")
                    + (f" over groups of {est['shard_group']} (hybrid)" if est["sharded"]
                       and est["shard_group"] < est["world"] else "")
                    + (f"; backend buffers: {buffers}" if buffers else "") + ")")
        lines.append(f"{cell.id:<12}  {cell.label[:36]:<36} {lr:>8}  {est['trainable_params']:>10,}  "
                     f"{est['total_mb']:>12,.0f}  {parts:<31}  {fits}" + (per_rank if est["world"] > 1 else ""))
    lengths = ", ".join(f"{m}: {n or spec.data.max_length}" + ("" if n else " (max_length; no tokenizer)")
                        for m, n in seq.items())
    lines.append(f"\npeak memory = weights + gradients + AdamW states + activations at batch {spec.train.batch_size}"
                 f" x the longest training example ({lengths}), + what fsdp/ddp allocate beyond them (unsharded "
                 "copies, comm buffers; harness/memory.py); measured above the pre-load baseline "
                 "(CPU: RssAnon, CUDA: max_memory_allocated)")
    from harness.power import power_lines  # the detectable difference of each suite's headline metric

    lines += ["", *power_lines(spec, root, cells)]
    return "\n".join(lines)


def _log_file(spec: MatrixSpec, results_dir: Path) -> Path:
    """results_dir/logs/dry-run.log where the results folder exists and is writable; else a new temporary file
    (a dry run creates no results folder)."""
    if results_dir.is_dir():
        try:
            (results_dir / "logs").mkdir(exist_ok=True)
            log = results_dir / "logs" / "dry-run.log"
            log.open("w", encoding="utf-8").close()
            return log
        except OSError:
            pass
    fd, name = tempfile.mkstemp(prefix=f"harness-dry-run-{spec.name}-", suffix=".log")
    os.close(fd)
    return Path(name)


def dry_run(spec: MatrixSpec, root: Path, results_dir: Path) -> None:
    """Print the plan on stdout; what the libraries print while it is made goes to a log (`_log_file`), and
    one line on stderr says where, when there was any (an empty log is removed)."""
    from harness.procs import output_to

    log = _log_file(spec, results_dir)
    with output_to(log):
        plan = render_plan(spec, root)
    print(plan, flush=True)
    text = log.read_text(encoding="utf-8", errors="replace")
    if not text.strip():
        log.unlink(missing_ok=True)
        return
    print(f"harness: note: the libraries printed {len(text.splitlines())} line(s) while the plan was made; "
          f"they are in {log}", file=sys.stderr)
