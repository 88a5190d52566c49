"""The dry-run memory estimate is within 25% of the measured peak, and every smoke strategy trains the same tokens.

Each smoke strategy trains a few steps on the shipped tiny-world model at the smoke matrix's
batch size and max_length, in its own fresh process (an allocator that already served an
earlier model would hide part of the next one's memory), with the longest training example
in the first batch, since the estimate is for the batch that sets the peak.

Per rank under a sharding backend: the fsdp-smoke matrix's full cell trains a few steps under torchrun with 2 gloo
ranks, every batch as long as the longest example; each rank's parameter, gradient and optimizer-state bytes
match the estimate's per-rank parts, and its peak lies within 25% of the per-rank total, FSDP2's unsharded copies
and communication buffers included.
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


def _prepared(matrix: str, prefix: str):
    """The matrix's cell whose label starts with `prefix`, its model loaded and prepared with a memory monitor
    started just before the load (as a cell starts it), and its training examples encoded."""
    import harness.memory  # noqa: F401  (imported before the baseline, as a cell imports them: not its memory)
    import harness.train  # noqa: F401
    import strategies  # noqa: F401
    from harness import models
    from harness.budget import MemoryMonitor
    from harness.config import load_matrix
    from harness.data import encode, load_split
    from harness.matrix import expand, resolve_params
    from strategies.base import STRATEGIES

    suites = REPO / "matrices"
    cell = next(c for c in expand(load_matrix(suites / matrix), suites) if c.label.startswith(prefix))
    strategy = STRATEGIES.get(cell.strategy)()
    params = resolve_params(strategy.Params, cell.params)
    load_kwargs = strategy.load_kwargs(params)
    memory = MemoryMonitor().start()
    model, tok = models.load(cell.model, Path(cell.root), **load_kwargs)
    model = strategy.prepare(model, params)
    encoded = [encode(tok, r, cell.data.max_length) for r in load_split(cell.data, Path(cell.root), "train")]
    return cell, memory, model, tok, encoded


def _train(cell, memory, model, tok, examples: list[dict]) -> dict:
    """Train on exactly `examples`; the usage and the dry-run estimate for the longest of them."""
    from harness.memory import estimate
    from harness.train import train

    tokens = sum(len(e["input_ids"]) for e in examples)
    usage = train(model, tok, examples, cell.train, {"tokens": tokens}, cell.seed, memory=memory)
    memory.stop()
    longest = max(len(e["input_ids"]) for e in examples)
    return {"label": cell.label, "budget": tokens, "usage": usage, "estimate": estimate(cell, seq_len=longest)}


def probe(prefix: str) -> dict:
    """Train one smoke cell for a few steps; its usage and the dry-run estimate for the same shapes."""
    from harness.data import budgeted

    cell, memory, model, tok, encoded = _prepared("smoke.yaml", prefix)
    longest = max(encoded, key=lambda e: len(e["input_ids"]))
    examples = [longest] + budgeted(encoded, 20_000, cell.seed)[: STEPS * cell.train.batch_size - 1]
    return _train(cell, memory, model, tok, examples)


def fsdp_probe(out: Path) -> None:
    """One torchrun rank of fsdp-smoke's full cell; rank 0 writes what the ranks held and the estimate.

    Every example is the longest one: the training sampler shuffles and splits the examples over the ranks, so
    no order puts the longest in each rank's first batch; copies of it make every batch the one that sets the
    peak. The token budget is what they add up to."""
    from harness.distributed import rank

    cell, memory, model, tok, encoded = _prepared("fsdp-smoke.yaml", "full")
    longest = max(encoded, key=lambda e: len(e["input_ids"]))
    copies = STEPS * cell.train.batch_size * cell.train.world
    result = _train(cell, memory, model, tok, [{k: list(v) for k, v in longest.items()} for _ in range(copies)])
    if rank() == 0:
        out.write_text(json.dumps(result), encoding="utf-8")


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


MB = 2**20


@pytest.fixture(scope="module")
def fsdp_run(tmp_path_factory) -> dict:
    """fsdp-smoke's full cell, 3 steps under torchrun with 2 gloo ranks on CPU (the GPUs hidden: rank 1 would ask
    for a second one); what the ranks recorded and the dry-run estimate for the same shapes."""
    out = tmp_path_factory.mktemp("fsdp-probe") / "fsdp.json"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "CUDA_VISIBLE_DEVICES": ""}
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          __file__, "--fsdp", str(out)], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and out.is_file(), run.stderr[-3000:]
    p = json.loads(out.read_text("utf-8"))
    assert p["estimate"]["world"] == 2, p["estimate"]
    assert sorted(p["estimate"]["sharded"]) == ["gradients_mb", "optimizer_mb", "weights_mb"], p["estimate"]
    assert p["usage"]["backend"] == "fsdp" and [r["rank"] for r in p["usage"]["per_rank"]] == [0, 1], p["usage"]
    return p


@pytest.mark.slow
def test_fsdp_estimate_per_rank_is_what_each_rank_held(fsdp_run):
    """The estimate's per-rank weights, gradients and optimizer states against the tensors each rank held
    (harness.distributed.local_bytes, usage.per_rank): the same elements counted, so they agree to the estimate's
    0.1 MB rounding (0.3% here); checked at 2%, and the unsharded estimate (twice as much) is far outside."""
    est = fsdp_run["estimate"]
    held_est = est["weights_mb"] + est["gradients_mb"] + est["optimizer_mb"]
    for r in fsdp_run["usage"]["per_rank"]:
        held = (r["param_bytes"] + r["grad_bytes"] + r["optim_bytes"]) / MB
        assert abs(held_est - held) <= 0.02 * held, (r, est)
        assert abs(2 * held_est - held) > 0.25 * held, (r, est)


@pytest.mark.slow
def test_fsdp_estimate_per_rank_is_within_25_percent_of_each_ranks_peak(fsdp_run):
    """The estimate's total per rank against each rank's peak, within the 25% the one-process peaks get.

    Measured as for one process (a rank is one process): RssAnon above the rank's own pre-load baseline (usage.
    per_rank peak_memory_mb). Beyond its shards a rank holds FSDP2's unsharded copies (the root's parameters and
    gradient, the gathered and prefetched layers, a layer's full-size gradients) and communication buffers (the
    held reduce-scatter input, gloo's staging in its threads' malloc arenas): at fsdp-smoke's shapes (batch 8 x 73
    tokens) 122.1 MB estimated against 147.4-158.2 MB measured per rank in 5 runs (100.1 MB before they were
    counted), 22.8% under at the highest. The rest is memory malloc keeps free in its arenas, which the estimate
    does not model for one process either: the bytes malloc had handed out peaked at about 109 MB per rank, one
    process's at about 110 MB against a 138-143 MB peak."""
    est = fsdp_run["estimate"]
    for r in fsdp_run["usage"]["per_rank"]:
        measured = r["peak_memory_mb"]
        assert abs(est["total_mb"] - measured) <= 0.25 * measured, (r, est)


if __name__ == "__main__":
    if sys.argv[1] == "--fsdp":  # under torchrun: one rank of the FSDP2 probe
        fsdp_probe(Path(sys.argv[2]))
    else:
        print(json.dumps(probe(sys.argv[1])))
