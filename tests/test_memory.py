"""The dry-run memory estimate is within 25% of the measured peak, and every smoke strategy trains the same tokens.

Each smoke strategy trains a few steps on the shipped tiny-world model at the smoke matrix's
batch size and max_length, in its own fresh process (an allocator that already served an
earlier model would hide part of the next one's memory), with the longest training example
in the first batch, since the estimate is for the batch that sets the peak.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

pytestmark = pytest.mark.xdist_group("memory_probes")  # one worker runs the six probe processes, once
SMOKE_PREFIXES = ("full", "lora r=16", "qlora", "adapter", "prefix", "bitfit")
STEPS = 3


def probe(prefix: str) -> dict:
    """Train one smoke cell for a few steps; its usage and the dry-run estimate for the same shapes."""
    import strategies  # noqa: F401
    from harness import models
    from harness.budget import MemoryMonitor
    from harness.config import load_matrix
    from harness.data import budgeted, encode, load_split
    from harness.matrix import expand, resolve_params
    from harness.memory import estimate
    from harness.train import train
    from strategies.base import STRATEGIES

    suites = REPO / "matrices"
    cell = next(c for c in expand(load_matrix(suites / "smoke.yaml"), suites) if c.label.startswith(prefix))
    strategy = STRATEGIES.get(cell.strategy)()
    params = resolve_params(strategy.Params, cell.params)
    load_kwargs = strategy.load_kwargs(params)
    memory = MemoryMonitor().start()
    model, tok = models.load(cell.model, Path(cell.root), **load_kwargs)
    model = strategy.prepare(model, params)
    encoded = [encode(tok, r, cell.data.max_length) for r in load_split(cell.data, Path(cell.root), "train")]
    longest = max(encoded, key=lambda e: len(e["input_ids"]))
    examples = [longest] + budgeted(encoded, 20_000, cell.seed)[: STEPS * cell.train.batch_size - 1]
    tokens = sum(len(e["input_ids"]) for e in examples)
    usage = train(model, tok, examples, cell.train, {"tokens": tokens}, cell.seed, memory=memory)
    memory.stop()
    return {"label": cell.label, "budget": tokens, "usage": usage,
            "estimate": estimate(cell, seq_len=len(longest["input_ids"]))}


@pytest.fixture(scope="module")
def probes():
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    out = {}
    for prefix in SMOKE_PREFIXES:
        run = subprocess.run([sys.executable, __file__, prefix], env=env, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr[-2000:]
        out[prefix] = json.loads(run.stdout.strip().splitlines()[-1])
    return out


@pytest.mark.slow
def test_every_smoke_strategy_consumes_exactly_the_same_budget(probes):
    consumed = {p["label"]: (p["usage"]["tokens"], p["usage"]["steps"]) for p in probes.values()}
    budget = next(iter(probes.values()))["budget"]
    assert set(consumed.values()) == {(budget, STEPS)}, consumed


@pytest.mark.slow
@pytest.mark.parametrize("prefix", SMOKE_PREFIXES)
def test_dry_run_estimate_is_within_25_percent_of_the_measured_peak(probes, prefix):
    p = probes[prefix]
    measured, estimated = p["usage"]["peak_memory_mb"], p["estimate"]["total_mb"]
    assert abs(estimated - measured) <= 0.25 * measured, (p["label"], estimated, measured, p["estimate"])


if __name__ == "__main__":
    print(json.dumps(probe(sys.argv[1])))
