"""What a result was measured with: package versions, device, the code's git sha, and how loaded the machine was.

    env = capture()   # {"python": "3.11.7", "packages": {...}, "device": "cpu", "git": {...}, "load_start": 0.4}

The load average (1 minute) is taken when the cell starts and again when it ends (`load_end`, set by the
cell): time-based figures (seconds, tokens/s) from a machine with more runnable threads than cores
(`load > cpus`) measure the contention as much as the strategy, and the report says so.
"""

from __future__ import annotations

import os
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

# The versions that shape a cell's numbers: they are part of its id (matrix.fingerprint), and results that differ
# in them are never one set (report/frame.current_set).
VERSIONED = ("harness", "torch", "transformers", "peft", "bitsandbytes", "lm-eval")
PACKAGES = ("torch", "transformers", "peft", "accelerate", "bitsandbytes", "datasets", "lm-eval", "rouge-score",
            "sacrebleu")


def _git() -> dict:
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        # results being written are not code changes: a committed results folder re-measured stays "clean"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ":/",
                                ":(exclude,top)results"], cwd=here, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    return {"sha": sha.stdout.strip(), "dirty": bool(dirty.stdout.strip())} if sha.returncode == 0 else {}


def _version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def load_average() -> float | None:
    """The 1-minute load average (None where the OS has none, e.g. Windows)."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def capture() -> dict:
    import torch

    from harness import __version__

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu ({torch.get_num_threads()} threads)"
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": device,
        "packages": {"harness": __version__, **{p: _version(p) for p in PACKAGES}},
        "git": _git(),
        "cpus": os.cpu_count(),
        "load_start": load_average(),
    }
