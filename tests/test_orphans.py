"""No orphans: killing only the parent `harness run` (SIGKILL, SIGTERM, SIGINT) leaves no process of the run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import psutil
import pytest
from conftest import REPO, TINY_WORLD

from harness import store
from harness.cli import main

MATRIX = """
name: orphans
models: {model}
data: {{path: {data}}}
budget: {{tokens: {tokens}}}
train: {{batch_size: 4{train}}}
strategies: [full]
eval: {{suites: [perplexity], limit: 4}}
"""


# Cells fork from the run's zygote and start at once, so a 4,000-token cell can be over before a loaded test
# machine looks again: the signal must reach the runner while it waits for a cell that is still training.
MID_CELL_TOKENS = 60_000


def _tree(pid: int) -> list[psutil.Process]:
    """The process and all its descendants (torchrun starts its workers in sessions of their own)."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _alive(procs: list[psutil.Process]) -> list[psutil.Process]:
    out = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


def _start(tmp_path, model, train="", tokens=4000):
    shutil.copytree(TINY_WORLD / "data" / "record", tmp_path / "record")
    path = tmp_path / "m.yaml"
    path.write_text(MATRIX.format(model=model, data=tmp_path / "record", train=train, tokens=tokens))
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    run = subprocess.Popen([sys.executable, "-m", "harness", "run", "--matrix", str(path), "--out", str(out)],
                           env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           preexec_fn=_default_signals)
    return run, path, out


def _default_signals():
    """The runner starts as from a terminal: SIGINT and SIGTERM unblocked, at their defaults. An ignored or blocked
    disposition is inherited through exec, and what an xdist worker ran before must not decide this test."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _wait_until(check, seconds: float, what: str):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if value := check():
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {seconds}s waiting for {what}")


def _in_phase(out, phase: str):
    """True once a cell's child has started `phase` (it is mid-cell, past its imports)."""
    for f in (out / "logs").glob("*.progress.jsonl") if (out / "logs").is_dir() else []:
        if any(json.loads(x).get("phase") == phase for x in f.read_text().splitlines() if x.strip()):
            return True
    return False


def _kill_parent_only(run, sig, at_least: int = 2):
    procs = _tree(run.pid)
    assert len(procs) >= at_least, f"expected the runner and its cell's processes, got {[p.cmdline() for p in procs]}"
    os.kill(run.pid, sig)  # the parent's pid alone, as a scheduler or a closed terminal does
    run.wait(timeout=60)
    try:
        _wait_until(lambda: not _alive(procs), 10, "the run's processes to end")
    except AssertionError:
        left = _alive(procs)
        for p in left:
            p.kill()
        raise AssertionError(f"processes outlived the parent: {[p.cmdline() for p in left]}") from None


@pytest.mark.slow
def test_kill_9_of_the_parent_alone_leaves_no_process_and_a_second_run_completes(tmp_path, tiny_model_dir):
    run, path, out = _start(tmp_path, tiny_model_dir, tokens=MID_CELL_TOKENS)
    _wait_until(lambda: _in_phase(out, "train"), 240, "the trained cell to train")
    _kill_parent_only(run, signal.SIGKILL)
    assert main(["run", "--matrix", str(path), "--out", str(out), "--in-process"]) == 0  # the lock was released
    assert {r["status"] for r in store.load_all(out)} == {"ok"} and len(store.load_all(out)) == 2


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_or_sigint_to_the_parent_alone_leaves_no_process(tmp_path, tiny_model_dir, sig):
    run, _, out = _start(tmp_path, tiny_model_dir, tokens=MID_CELL_TOKENS)
    _wait_until(lambda: _in_phase(out, "train"), 240, "the trained cell to train")
    _kill_parent_only(run, sig)
    assert run.returncode == (130 if sig == signal.SIGINT else -signal.SIGTERM)


@pytest.mark.slow
def test_torchrun_and_its_workers_die_with_the_parent(tmp_path, tiny_model_dir):
    run, _, out = _start(tmp_path, tiny_model_dir, train=", nproc_per_node: 2", tokens=MID_CELL_TOKENS)
    # the base cell first, then the full cell under torchrun: the runner, torchrun and two workers
    _wait_until(lambda: len(_tree(run.pid)) >= 4 and _in_phase(out, "train"), 300, "torchrun's workers to train")
    _kill_parent_only(run, signal.SIGKILL, at_least=4)
