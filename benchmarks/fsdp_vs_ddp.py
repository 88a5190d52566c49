"""FSDP2 against DDP on CPU: the same cell (tiny world, same seed and data order) under both, 2 gloo ranks each.

For full fine-tuning and LoRA r=4 it prints, side by side from one run:
- the loss curves' largest relative difference over the first 20 steps (target <= 1e-3);
- each rank's bytes of parameters + gradients + optimizer states, FSDP / DDP (target within 10% of 0.5);
- tokens/s of each (two ranks on this machine's cores; other processes share them);
- the trained models, gathered on rank 0, scored on one fixed batch: the same loss under both.

    PYTHONPATH=$PWD python benchmarks/fsdp_vs_ddp.py [--tokens 9000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WORLD = REPO / "harness" / "zoo" / "tiny-world"
RUNS = [("full", {}), ("lora", {"r": 4})]
LR = {"full": 3e-4, "lora": 2e-3}
STEPS_COMPARED = 20


def worker(backend: str, strategy: str, params: dict, tokens: int, out: Path) -> None:
    """One torchrun rank: train the cell under `backend`, gather the model on rank 0, write what it measured."""
    import torch
    from transformers import set_seed

    import strategies  # noqa: F401
    from harness.config import DataSpec, ModelSpec, TrainSpec
    from harness.data import budgeted, encode, load_split
    from harness.distributed import full_model, rank
    from harness.matrix import resolve_params
    from harness.models import load
    from harness.train import train
    from strategies.base import STRATEGIES

    set_seed(0)
    strat = STRATEGIES.get(strategy)()
    p = resolve_params(strat.Params, params)
    model, tok = load(ModelSpec(id="tiny-world"))
    model = strat.prepare(model, p)
    rows = load_split(DataSpec(path=str(WORLD / "data" / "record")), WORLD, "train")
    examples = budgeted([encode(tok, r, 256) for r in rows[:400]], tokens, seed=0)
    spec = TrainSpec.model_validate({"batch_size": 4, "learning_rate": LR[strategy], "warmup_steps": 2,
                                     "nproc_per_node": 2, "distributed": {"backend": backend}})
    usage = train(model, tok, examples, spec, {"tokens": tokens}, seed=0)
    if backend == "fsdp":
        model = full_model(model, lambda: strat.prepare(load(ModelSpec(id="tiny-world"))[0], p))
    if rank() != 0:
        return
    batch = [encode(tok, r, 256) for r in rows[-8:]]
    with torch.no_grad():
        losses = [model(input_ids=torch.tensor([b["input_ids"]]), labels=torch.tensor([b["labels"]])).loss.item()
                  for b in batch]
    out.write_text(json.dumps({**{k: usage[k] for k in ("tokens", "steps", "tokens_per_second", "loss_curve",
                                                         "per_rank", "backend", "world_size")},
                               "eval_loss": sum(losses) / len(losses)}), encoding="utf-8")


def _run(backend: str, strategy: str, params: dict, tokens: int, folder: Path) -> dict:
    out = folder / f"{backend}-{strategy}.json"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", __file__, "--worker",
           backend, strategy, json.dumps(params), str(tokens), str(out)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode or not out.is_file():
        sys.exit(f"{backend} {strategy} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return json.loads(out.read_text(encoding="utf-8"))


def _held(run: dict) -> list[int]:
    return [r["param_bytes"] + r["grad_bytes"] + r["optim_bytes"] for r in run["per_rank"]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=9000, help="tokens per run (16 steps; 13000: ~23)")
    args = ap.parse_args()
    load = os.getloadavg()[0]
    print(f"tiny world, 2 gloo ranks, batch 4 per rank, {args.tokens} tokens; load average {load:.2f} on "
          f"{os.cpu_count()} cores at the start")
    print(f"{'cell':<10}{'steps':>6}{'max rel loss diff':>19}{'held FSDP/DDP':>15}{'FSDP local frac':>17}"
          f"{'DDP tok/s':>11}{'FSDP tok/s':>12}{'eval loss DDP':>15}{'FSDP':>10}")
    with tempfile.TemporaryDirectory(prefix="fsdp-vs-ddp-") as tmp:
        for strategy, params in RUNS:
            ddp, fsdp = (_run(b, strategy, params, args.tokens, Path(tmp)) for b in ("ddp", "fsdp"))
            assert ddp["tokens"] == fsdp["tokens"] == args.tokens, (ddp["tokens"], fsdp["tokens"])
            n = min(STEPS_COMPARED, len(ddp["loss_curve"]), len(fsdp["loss_curve"]))
            diff = max(abs(a - b) / abs(a) for a, b in zip(ddp["loss_curve"][:n], fsdp["loss_curve"][:n]))
            ratios = [f / d for f, d in zip(_held(fsdp), _held(ddp))]
            fracs = "/".join(f"{r['local_fraction']:.3f}" for r in fsdp["per_rank"])
            label = strategy + (f" r={params['r']}" if params else "")
            print(f"{label:<10}{ddp['steps']:>6}{diff:>19.2e}{'/'.join(f'{r:.3f}' for r in ratios):>15}{fracs:>17}"
                  f"{ddp['tokens_per_second']:>11.0f}{fsdp['tokens_per_second']:>12.0f}{ddp['eval_loss']:>15.5f}"
                  f"{fsdp['eval_loss']:>10.5f}")
            print(f"{'':<10}losses compared over {n} logged steps; per rank held (params+grads+optim, bytes): "
                  f"DDP {_held(ddp)}, FSDP {_held(fsdp)}")
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        backend, strategy, params, tokens, out = sys.argv[2:7]
        worker(backend, strategy, json.loads(params), int(tokens), Path(out))
    else:
        main()
