"""The budget every cell shares, enforced as a Trainer callback, and what a cell consumed.

Training stops when the non-padding token count reaches the budget (the data is laid
out to hit it exactly), when the wall-clock cap passes, or when the memory cap is
broken; a NaN loss marks the cell diverged.

    cb = BudgetCallback(tokens=100_000, max_seconds=None, max_memory_mb=None)
    Trainer(..., callbacks=[cb]); cb.stopped_by  # None, "time", "memory" or "nan"
"""

from __future__ import annotations

import math
import time

import psutil
import torch
from transformers import TrainerCallback


def peak_memory_mb() -> float:
    """Peak CUDA allocation where there is a GPU, else this process's resident set size now."""
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return psutil.Process().memory_info().rss / 2**20


class BudgetCallback(TrainerCallback):
    def __init__(self, tokens: int, max_seconds: float | None, max_memory_mb: float | None):
        self.tokens, self.max_seconds, self.max_memory_mb = tokens, max_seconds, max_memory_mb
        self.stopped_by: str | None = None
        self.peak_mb = 0.0
        self.start = 0.0
        self.seconds = 0.0
        self.losses: list[float] = []

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.seconds = time.perf_counter() - self.start
        self.peak_mb = max(self.peak_mb, peak_memory_mb())
        if state.num_input_tokens_seen >= self.tokens:
            control.should_training_stop = True
        elif self.max_seconds and self.seconds > self.max_seconds:
            self.stopped_by, control.should_training_stop = "time", True
        elif self.max_memory_mb and self.peak_mb > self.max_memory_mb:
            self.stopped_by, control.should_training_stop = "memory", True

    def on_log(self, args, state, control, logs=None, **kwargs):
        loss = (logs or {}).get("loss")
        if loss is None:
            return
        self.losses.append(float(loss))
        if not math.isfinite(loss):
            self.stopped_by, control.should_training_stop = "nan", True
