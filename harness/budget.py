"""The budget every cell shares, enforced as a Trainer callback, and the memory a cell really used.

Training stops when the non-padding token count reaches the budget (the data is laid
out to hit it exactly), when the wall-clock cap passes, or when the memory cap is
broken; a NaN loss marks the cell diverged.

Memory is measured above a baseline taken just before the model is loaded, because the
resident set of a process that imported torch already holds ~300 MB of libraries that no
estimate from a model's config can know: on CUDA the baseline is torch.cuda.memory_allocated
and the peak max_memory_allocated; on CPU a background thread samples the RSS (ru_maxrss
would be a lifetime peak that includes the imports).

    mem = MemoryMonitor().start()            # before models.load
    cb = BudgetCallback(tokens=100_000, max_seconds=None, max_memory_mb=None, memory=mem)
    Trainer(..., callbacks=[cb]); cb.stopped_by  # None, "time", "memory" or "nan"
"""

from __future__ import annotations

import json
import math
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import psutil
import torch
from transformers import TrainerCallback

MB = 2**20


def rss() -> tuple[int, int]:
    """(resident set, the part the process allocated itself: Linux RssAnon) in bytes, from one /proc read.

    Mapped files (shared libraries loaded on first use, a safetensors file read through mmap)
    are page cache the kernel can drop, not memory the training needs. Elsewhere both are the RSS.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            fields = dict(line.split(":", 1) for line in f if line.startswith(("VmRSS:", "RssAnon:")))
        return int(fields["VmRSS"].split()[0]) * 1024, int(fields["RssAnon"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        whole = psutil.Process().memory_info().rss
        return whole, whole


class MemoryMonitor:
    """Peak memory of this process, absolute and above the baseline taken at `start`."""

    def __init__(self, interval: float = 0.005):
        self.interval = interval
        self.cuda = torch.cuda.is_available()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.baseline_rss, self.baseline_anon = self.peak_rss, self.peak_anon = rss()
        self.baseline_cuda = 0
        self.cuda_floor = 0  # the CUDA peak before the last `aside` (which resets torch's peak counter)
        self._paused = False

    def start(self) -> MemoryMonitor:
        self.baseline_rss, self.baseline_anon = self.peak_rss, self.peak_anon = rss()
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
            self.baseline_cuda = torch.cuda.memory_allocated()
            self.cuda_floor = 0
        self._thread = threading.Thread(target=self._sample, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        if self._paused:
            return
        whole, anon = rss()
        self.peak_rss, self.peak_anon = max(self.peak_rss, whole), max(self.peak_anon, anon)

    def stop(self) -> None:
        self.sample()
        self._stop.set()
        if self._thread:
            self._thread.join()

    @contextmanager
    def aside(self):
        """Memory used inside is not the run's (writing a snapshot): the peaks are put back as they were before."""
        self.sample()
        saved = self.peak_rss, self.peak_anon
        cuda_peak = torch.cuda.max_memory_allocated() if self.cuda else 0
        self._paused = True
        try:
            yield
        finally:
            self.peak_rss, self.peak_anon = saved
            if self.cuda:
                torch.cuda.reset_peak_memory_stats()
                self.cuda_floor = max(self.cuda_floor, cuda_peak)
            self._paused = False

    @property
    def peak_rss_mb(self) -> float:
        return self.peak_rss / MB

    @property
    def peak_mb(self) -> float:
        """What the model, its training state and activations took: the number the memory cap and estimate use."""
        if self.cuda:
            return (max(torch.cuda.max_memory_allocated(), self.cuda_floor) - self.baseline_cuda) / MB
        return (self.peak_anon - self.baseline_anon) / MB


class BudgetCallback(TrainerCallback):
    """Stops training at the token budget or a broken cap; appends progress lines for the runner's bar."""

    def __init__(self, tokens: int, max_seconds: float | None, max_memory_mb: float | None,
                 memory: MemoryMonitor | None = None, progress_file: Path | None = None, trial: str = ""):
        self.tokens, self.max_seconds, self.max_memory_mb = tokens, max_seconds, max_memory_mb
        self.memory = memory or MemoryMonitor()
        self.progress_file, self.trial = progress_file, trial
        self.stopped_by: str | None = None
        self.start = 0.0
        self.seconds = 0.0
        self.excluded = 0.0  # seconds spent on work that is not training (snapshots.SnapshotCallback)
        self.losses: list[float] = []

    @property
    def peak_mb(self) -> float:
        return self.memory.peak_mb

    def on_train_begin(self, args, state, control, **kwargs):
        if self.memory._thread is None:
            self.memory.start()
        self.start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.seconds = time.perf_counter() - self.start - self.excluded
        self.memory.sample()
        if state.num_input_tokens_seen >= self.tokens:
            control.should_training_stop = True
        elif self.max_seconds and self.seconds > self.max_seconds:
            self.stopped_by, control.should_training_stop = "time", True
        elif self.max_memory_mb and self.peak_mb > self.max_memory_mb:
            self.stopped_by, control.should_training_stop = "memory", True
        if self.progress_file and state.is_world_process_zero:
            line = {"tokens": int(state.num_input_tokens_seen), "budget": self.tokens, "trial": self.trial,
                    "loss": self.losses[-1] if self.losses else None}
            with open(self.progress_file, "a", encoding="utf-8") as f:
                f.write(json.dumps(line) + "\n")

    def on_log(self, args, state, control, logs=None, **kwargs):
        loss = (logs or {}).get("loss")
        if loss is None:
            return
        self.losses.append(float(loss))
        if not math.isfinite(loss):
            self.stopped_by, control.should_training_stop = "nan", True
