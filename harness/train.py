"""Train a prepared model under the matrix budget with transformers.Trainer (callbacks only, no subclass).

Under torchrun (WORLD_SIZE > 1) the same examples are split over the ranks by Trainer's
DDP data loader; the example count is first made a multiple of batch x world so that no
rank pads its last batch with repeated examples, which would overrun the token budget
(Trainer gathers the token count across ranks).

    usage = train(model, tok, examples, cell.train, cell.budget, seed=0, workdir=tmp)
    usage["tokens"], usage["seconds"]
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from pathlib import Path

import torch
from accelerate.utils import extract_model_from_parallel
from transformers import Trainer, TrainingArguments

from harness import distributed, models
from harness.budget import BudgetCallback, MemoryMonitor
from harness.config import TrainSpec
from harness.data import collator
from harness.flops import param_count, training_flops
from harness.snapshots import SnapshotCallback


def uses_bf16(spec: TrainSpec) -> bool:
    return models.uses_bf16(spec.bf16)


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def split_to_multiple(examples: list[dict], multiple: int) -> list[dict]:
    """Split the longest examples in two until the count is a multiple; the tokens stay exactly the same."""
    out = list(examples)
    while len(out) % multiple:
        i = max(range(len(out)), key=lambda j: len(out[j]["input_ids"]))
        ex = out[i]
        half = len(ex["input_ids"]) // 2
        if half == 0:
            raise ValueError(f"cannot spread {len(examples)} examples evenly over batches of {multiple}: "
                             "too few tokens")
        out[i:i + 1] = [{k: v[:half] for k, v in ex.items()}, {k: v[half:] for k, v in ex.items()}]
    return out


def training_kwargs(spec: TrainSpec, steps: int, seed: int, workdir: Path, counting: bool,
                    tracking: dict | None = None, root: Path | None = None, world: int = 1) -> dict:
    """What TrainingArguments gets for the cell; the deepspeed backend adds `deepspeed=` (its config as given)."""
    kwargs = dict(
        output_dir=str(workdir), per_device_train_batch_size=spec.batch_size, max_steps=steps,
        learning_rate=spec.learning_rate, weight_decay=spec.weight_decay, warmup_steps=spec.warmup_steps,
        lr_scheduler_type=spec.lr_scheduler, seed=seed, data_seed=seed, use_cpu=not torch.cuda.is_available(),
        bf16=uses_bf16(spec), logging_steps=max(1, steps // 25), save_strategy="no",
        include_num_input_tokens_seen=counting, dataloader_num_workers=0,
        remove_unused_columns=False, disable_tqdm=True, logging_nan_inf_filter=False,  # the filter hides NaN
        **(tracking or {"report_to": "none"}),  # harness.tracking: off by default
    )
    if world > 1 and spec.backend == "deepspeed":
        kwargs["deepspeed"] = distributed.deepspeed_config(spec.distributed.deepspeed.config, root or Path.cwd())
    return kwargs


def train(model, tok, examples: list[dict], spec: TrainSpec, budget: dict, seed: int, workdir: Path | None = None,
          memory: MemoryMonitor | None = None, progress_file: Path | None = None, trial: str = "",
          packing: bool = False, tracking: dict | None = None, snapshot_at: list[float] | None = None,
          snapshot_dir: Path | None = None, root: Path | None = None) -> dict:
    """One pass over `examples` (already budgeted); returns what the run consumed.

    `memory`, started before the model was loaded, makes peak_memory_mb include the weights.
    `snapshot_at` (fractions of the token budget) writes the trained part to `snapshot_dir` when the run reaches
    each (harness.snapshots); usage["snapshots"] lists them, their time and memory left out of the run's.
    Under train.distributed fsdp the model is sharded in place (harness.distributed; `full_model` gathers it back),
    at world size 1 too when the process runs under torchrun; usage["per_rank"] lists what each rank held. `root`
    resolves a relative deepspeed config file.
    """
    data_collator, counting = collator(tok, packing, model)  # the data layer decides padding vs packing
    world = world_size()
    if world > 1:
        examples = split_to_multiple(examples, spec.batch_size * world)
    steps = math.ceil(len(examples) / (spec.batch_size * world))
    own_workdir = workdir is None  # Trainer wants an output folder; with save_strategy "no" nothing in it is kept
    workdir = workdir or Path(tempfile.mkdtemp(prefix="harness-train-"))
    backend = distributed.training_backend(spec, world)
    if backend == "deepspeed" and not distributed.deepspeed_installed():
        raise RuntimeError("distributed.backend deepspeed: the deepspeed package is not installed here")
    args = TrainingArguments(**training_kwargs(spec, steps, seed, workdir, counting, tracking, root, world))
    if backend == "fsdp":  # after TrainingArguments, which starts the process group
        model = distributed.shard(model, spec.distributed.fsdp)
    own_monitor = memory is None
    memory = memory or MemoryMonitor().start()
    callback = BudgetCallback(budget["tokens"], budget.get("max_seconds"), budget.get("max_memory_mb"), memory,
                              progress_file, trial)
    callbacks = [callback]
    if snapshot_at:
        callbacks.append(SnapshotCallback(snapshot_at, budget["tokens"], snapshot_dir, callback))
    check = distributed.ShardCheck(min(spec.shard_group, world)) if backend in ("fsdp", "deepspeed") else None
    grads = distributed.GradBytes(model)
    callbacks += [grads, *([check] if check else [])]
    trainer = Trainer(
        model=model, args=args, train_dataset=examples, processing_class=tok, callbacks=callbacks,
        data_collator=data_collator,
    )
    if check:
        check.trainer = trainer
    try:
        trainer.train()
    finally:
        # Trainer's mixed precision (accelerate) leaves the model's forward wrapped in bf16 autocast: evaluation
        # after training would run in bf16 whatever eval.bf16 says, and only where the cell trained in bf16
        extract_model_from_parallel(model, keep_fp32_wrapper=False)
        if own_monitor:
            memory.stop()
        if own_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    mine = {"rank": distributed.rank(), **distributed.local_bytes(trainer.model_wrapped, trainer.optimizer,
                                                                  grads.bytes),
            "peak_memory_mb": round(memory.peak_mb, 1), "peak_rss_mb": round(memory.peak_rss_mb, 1)}
    per_rank = distributed.gather(mine) if world > 1 else [mine]
    state = trainer.state
    tokens = int(state.num_input_tokens_seen)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {
        "tokens": tokens,
        "target_tokens": sum(sum(1 for t in ex["labels"] if t != -100) for ex in examples),
        "steps": int(state.global_step),
        "seconds": round(callback.seconds, 2),
        "tokens_per_second": round(tokens / max(callback.seconds, 1e-9), 1),
        "peak_memory_mb": round(memory.peak_mb, 1),
        "peak_rss_mb": round(memory.peak_rss_mb, 1),
        "flops": training_flops(param_count(model), trainable, tokens),
        "world_size": world,
        "backend": backend,
        "per_rank": per_rank,  # what each rank held: parameter, gradient and optimizer-state bytes, peak memory
        "loss_first": callback.losses[0] if callback.losses else None,
        "loss_last": callback.losses[-1] if callback.losses else None,
        "loss_curve": callback.losses,
        "stopped_by": callback.stopped_by,
        **({"snapshots": callbacks[1].taken} if snapshot_at else {}),
    }
