"""What a result was measured with: package versions, device, the code's git sha and how loaded the machine was;
and the versions pinned.

    env = capture()   # {"python": "3.11.7", "packages": {...}, "device": "cpu", "git": {...}, "load_start": 0.4}
    drift(env["packages"], pinned())   # ["transformers 5.23.0 (constraints.txt pins 5.24.0)"]

The load average (1 minute) is taken when the cell starts and again when it ends (`load_end`, set by the
cell): time-based figures (seconds, tokens/s) from a machine with more runnable threads than cores
(`load > cpus`) measure the contention as much as the strategy, and the report says so.

`constraints.txt` (repository root) pins every dependency that shapes a number to the version the
committed results were measured with; `pip install -c constraints.txt -e .` installs exactly those.
`python -m harness.env > constraints.txt` writes it from the running environment (pyproject's
dependencies and extras, plus `TRANSITIVE`), and the leaderboard header flags results made under other
versions (`drift`).
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
CONSTRAINTS = REPO / "constraints.txt"
TRANSITIVE = ("numpy", "huggingface-hub", "nltk", "regex")  # not ours to require, but they shape numbers too
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


def canonical(name: str) -> str:
    """A distribution name as pip compares them (PEP 503): lower case, runs of -_. as one '-'."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pinned(path: Path = CONSTRAINTS) -> dict[str, str]:
    """{canonical name: version} from a constraints file of `name==version` lines; {} when there is none
    (an installed package ships no constraints file)."""
    path = Path(path)
    if not path.is_file():
        return {}
    pins = {}
    for n, line in enumerate(path.read_text("utf-8").splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s;]+)", line)
        if not m:
            raise ValueError(f"{path}:{n}: expected `name==version`, got {line!r}")
        pins[canonical(m[1])] = m[2]
    return pins


def drift(packages: dict[str, str | None], pins: dict[str, str]) -> list[str]:
    """Packages a result was measured with at another version than the pins (local labels such as +cpu ignored)."""
    out = []
    for name, v in packages.items():
        pin = pins.get(canonical(name))
        if pin and v and v.split("+")[0] != pin.split("+")[0]:
            out.append(f"{name} {v} ({CONSTRAINTS.name} pins {pin})")
    return out


def requirement_names(pyproject: Path = REPO / "pyproject.toml") -> list[str]:
    """Every distribution pyproject.toml requires, dependencies and extras, canonical, in file order."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    project = tomllib.loads(Path(pyproject).read_text("utf-8"))["project"]
    reqs = project["dependencies"] + [r for extra in project.get("optional-dependencies", {}).values() for r in extra]
    names = [canonical(re.match(r"[A-Za-z0-9._-]+", r)[0]) for r in reqs]
    return list(dict.fromkeys(n for n in names if n != canonical(project["name"])))


def constraints_text() -> str:
    """constraints.txt for the running environment: every requirement and `TRANSITIVE` at its installed version."""
    lines = ["# The versions the committed results were measured with: `pip install -c constraints.txt -e .`",
             "# Written by `python -m harness.env > constraints.txt`; tests/test_env.py checks it.",
             "# torch==X also accepts X's CUDA builds (X+cu128): install one first on a GPU machine and pip keeps it."]
    for name in dict.fromkeys(requirement_names() + [canonical(t) for t in TRANSITIVE]):
        if v := _version(name):
            lines.append(f"{name}=={v.split('+')[0]}")
        else:
            raise SystemExit(f"{name} is not installed here; install every extra ('.[test,ray,tracking]') first")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(constraints_text())
