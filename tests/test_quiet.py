"""`harness run --dry-run` shows the plan alone: what the libraries print while it is made goes to a log.

The subprocess test runs the command as a user would: the environment tests/conftest.py sets (offline hub,
one thread, the test's cache), but none of pytest's warning filters (pyproject's filterwarnings applies to
this process only), so a library's FutureWarning or kernel notice would reach the terminal as it would a user's.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from harness import plan
from harness.config import load_matrix
from harness.matrix import expand

REPO = Path(__file__).resolve().parent.parent
SMOKE = REPO / "matrices" / "smoke.yaml"
# what library noise looks like: Python warnings, logging records, bitsandbytes' and peft's notices
NOISE = re.compile(r"warn|failed to load|unsupported layer|deprecat|traceback", re.IGNORECASE)


def _noisy(text: str) -> list[str]:
    """Lines that are not the harness's own (`harness: warning: ...`, `harness: note: ...`) and look like noise."""
    return [line for line in text.splitlines() if not line.startswith("harness: ") and NOISE.search(line)]


def test_dry_run_of_the_smoke_matrix_prints_no_library_output(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}  # Python's default filters, as a user's
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
    env["TMPDIR"] = str(tmp_path)  # the log of a dry run with no results folder yet
    out = tmp_path / "results" / "smoke"
    proc = subprocess.run([sys.executable, "-m", "harness", "run", "--matrix", str(SMOKE), "--out", str(out),
                           "--dry-run"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert _noisy(proc.stdout) == [] and _noisy(proc.stderr) == [], proc.stdout + proc.stderr
    assert [line for line in proc.stderr.splitlines() if not line.startswith("harness: ")] == [], proc.stderr
    cells = expand(load_matrix(SMOKE), SMOKE.parent)
    assert f"{len(cells)} cells" in proc.stdout and "peak memory = weights" in proc.stdout
    assert all(c.id in proc.stdout for c in cells)
    assert not out.exists()  # a dry run creates no results folder
    for note in re.findall(r"^harness: note: .* are in (.+)$", proc.stderr, re.MULTILINE):
        assert Path(note).parent == tmp_path and Path(note).read_text(encoding="utf-8").strip()


NOISY = """
import logging, os, sys, warnings
from pathlib import Path
from harness.procs import output_to

with output_to(Path(sys.argv[1])):
    warnings.warn("a library FutureWarning", FutureWarning, stacklevel=1)
    logging.getLogger("bitsandbytes.test").warning("Failed to load a kernel")  # the last-resort handler
    os.write(2, b"raw stderr of a C extension\\n")
    os.write(1, b"raw stdout of a C extension\\n")
    print("a print")
    sys.stderr.write("a stderr write\\n")
print("after")
"""


def test_output_to_takes_warnings_logging_and_raw_writes_of_the_process(tmp_path):
    """In a process of its own: pytest replaces sys.stdout and sys.stderr and records warnings in this one."""
    log = tmp_path / "noise.log"
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", NOISY, str(log)], env=env, capture_output=True, text=True,
                          timeout=60)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "after\n", ""), proc.stderr
    text = log.read_text(encoding="utf-8")
    for part in ("a library FutureWarning", "Failed to load a kernel", "raw stderr", "raw stdout", "a print",
                 "a stderr write"):
        assert part in text


def test_dry_run_keeps_library_output_in_the_results_folders_log(tmp_path, capfd, monkeypatch):
    def noisy_plan(spec, root):  # what a C extension writes (pytest stands in for Python's own streams here)
        os.write(2, b"Unsupported layer type\n")
        os.write(1, b"Failed to load CPU gemm_4bit_forward\n")
        return "the plan"

    monkeypatch.setattr(plan, "render_plan", noisy_plan)
    results = tmp_path / "results"
    results.mkdir()
    spec = load_matrix(SMOKE)
    plan.dry_run(spec, SMOKE.parent, results)
    seen = capfd.readouterr()
    log = results / "logs" / "dry-run.log"
    assert seen.out == "the plan\n"
    assert re.fullmatch(rf"harness: note: the libraries printed 2 line\(s\) while the plan was made; they are in "
                        rf"{re.escape(str(log))}\n", seen.err), seen.err
    assert "Unsupported layer type" in log.read_text() and "gemm_4bit_forward" in log.read_text()

    monkeypatch.setattr(plan, "render_plan", lambda spec, root: "quiet plan")
    plan.dry_run(spec, SMOKE.parent, results)
    seen = capfd.readouterr()
    assert (seen.out, seen.err) == ("quiet plan\n", "") and not log.exists()  # nothing printed: no log, no note
