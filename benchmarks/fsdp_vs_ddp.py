"""FSDP2 against DDP on CPU: the same cell (tiny world, same seed and data order) under both, 2 gloo ranks each.

For full fine-tuning and LoRA r=4 it prints, side by side from one run:
- the loss curves' largest relative difference over the first 20 steps (target <= 1e-3);
- each rank's bytes of parameters + gradients + optimizer states, FSDP / DDP (target within 10% of 0.5);
- tokens/s of each (two ranks on this machine's cores; other processes share them);
- the trained models, gathered on rank 0, scored on one fixed batch: the same loss under both.

Then the real matrix path: `harness run` on matrices/fsdp-smoke.yaml as it is (backend fsdp) and on the same
matrix with `train.distributed.backend: ddp` (every other key identical), into OUT/fsdp and OUT/ddp; for each
trained cell and each evaluated metric, the FSDP value beside the DDP value and its 95% interval, and whether it
lies inside; and each rank's bytes, local (sharded) fraction and peak as the cell JSONs record them
(usage.per_rank). Exit status 1 when a metric lies outside (or a cell is missing, failed or not recorded per rank).

    PYTHONPATH=$PWD python benchmarks/fsdp_vs_ddp.py [--tokens 9000] [--out DIR] [--matrix-only]
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
MATRIX = REPO / "matrices" / "fsdp-smoke.yaml"
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


def _bytes(rank: dict) -> int:
    return rank["param_bytes"] + rank["grad_bytes"] + rank["optim_bytes"]


def _held(run: dict) -> list[int]:
    return [_bytes(r) for r in run["per_rank"]]


def curves(tokens: int) -> None:
    """The loss curves, bytes and fixed-batch loss of each strategy trained directly under both backends."""
    load = os.getloadavg()[0]
    print(f"tiny world, 2 gloo ranks, batch 4 per rank, {tokens} tokens; load average {load:.2f} on "
          f"{os.cpu_count()} cores at the start")
    print(f"{'cell':<10}{'steps':>6}{'max rel loss diff':>19}{'held FSDP/DDP':>15}{'FSDP local frac':>17}"
          f"{'DDP tok/s':>11}{'FSDP tok/s':>12}{'eval loss DDP':>15}{'FSDP':>10}")
    with tempfile.TemporaryDirectory(prefix="fsdp-vs-ddp-") as tmp:
        for strategy, params in RUNS:
            ddp, fsdp = (_run(b, strategy, params, tokens, Path(tmp)) for b in ("ddp", "fsdp"))
            assert ddp["tokens"] == fsdp["tokens"] == tokens, (ddp["tokens"], fsdp["tokens"])
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


def ddp_matrix(source: Path, dest: Path) -> Path:
    """`source` with train.distributed.backend set to ddp, every other key as it is, written to `dest`."""
    import yaml

    raw = yaml.safe_load(source.read_text("utf-8"))
    raw["train"]["distributed"]["backend"] = "ddp"
    dest.write_text(f"# {source.name} with train.distributed.backend: ddp (benchmarks/fsdp_vs_ddp.py)\n"
                    + yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return dest


def matrix_commands(out: Path) -> list[tuple[str, list[str], Path]]:
    """(backend, the `harness run` command, its results folder) for the FSDP matrix and its DDP twin."""
    out.mkdir(parents=True, exist_ok=True)
    twin = ddp_matrix(MATRIX, out / f"{MATRIX.stem}-ddp.yaml")
    return [(backend, [sys.executable, "-m", "harness.cli", "run", "--matrix", str(matrix), "--out",
                       str(out / backend)], out / backend) for backend, matrix in (("fsdp", MATRIX), ("ddp", twin))]


def _key(result: dict) -> tuple:
    cell = result["cell"]
    return cell["model"]["id"], cell["strategy"], json.dumps(cell.get("params") or {}, sort_keys=True), cell["seed"]


def _num(x, fmt: str = ".4f") -> str:
    return "n/a" if x is None else format(x, fmt)


def _cell_problems(result: dict, backend: str, world: int) -> list[str]:
    usage = result.get("usage") or {}
    if result.get("status") != "ok":
        return [f"{backend} cell {result['label']}: {result.get('status')} ({result.get('reason')})"]
    problems = []
    if (usage.get("backend"), usage.get("world_size")) != (backend, world):
        problems.append(f"{backend} cell {result['label']}: trained as {usage.get('backend')} over "
                        f"{usage.get('world_size')} ranks, not {backend} over {world}")
    ranks = usage.get("per_rank") or []
    fields = ("param_bytes", "grad_bytes", "optim_bytes", "local_fraction")
    if len(ranks) != world or any(f not in r for r in ranks for f in fields):
        problems.append(f"{backend} cell {result['label']}: usage.per_rank does not record {', '.join(fields)} "
                        f"for each of {world} ranks")
    return problems


def _metric_rows(f: dict, d: dict) -> tuple[list[str], list[str]]:
    """Each metric of the FSDP cell `f` against the DDP cell `d`'s interval: (lines, failures)."""
    lines, failures = [], []
    fm, dm = f.get("metrics") or {}, d.get("metrics") or {}
    for name in sorted(set(fm) | set(dm)):
        value, ddp = (fm.get(name) or {}).get("value"), dm.get(name) or {}
        lo, hi = ddp.get("ci_low"), ddp.get("ci_high")
        inside = None not in (value, lo, hi) and lo <= value <= hi
        interval = f"[{_num(lo)}, {_num(hi)}]"
        if not inside:
            failures.append(f"{f['label']} {name}: FSDP {_num(value)} " + (
                f"outside the DDP interval {interval}" if None not in (value, lo, hi)
                else f"against the DDP interval {interval}: not comparable"))
        lines.append(f"{f['label']:<26}{name:<24}{_num(value):>12}{_num(ddp.get('value')):>12}  {interval:<26}"
                     f"{'yes' if inside else 'NO'}")
    return lines, failures


def _rank_rows(f: dict, d: dict) -> list[str]:
    """Each rank's held bytes, local fraction and peaks as the FSDP cell records them, beside the DDP cell's."""
    ddp_ranks = {r.get("rank"): r for r in d["usage"]["per_rank"]}
    lines = []
    for r in f["usage"]["per_rank"]:
        o = ddp_ranks.get(r["rank"]) or {}
        held, other = _bytes(r), _bytes(o) if o else None
        lines.append(f"{f['label']:<26}{r['rank']:>5}{held:>16,}{_num(other, ','):>14}"
                     f"{_num(held / other if other else None, '.3f'):>10}{_num(r.get('local_fraction'), '.3f'):>11}"
                     f"{_num(r.get('peak_memory_mb'), '.1f'):>14}{_num(o.get('peak_memory_mb'), '.1f'):>8}"
                     f"{_num(r.get('peak_rss_mb'), '.0f'):>13}")
    return lines


def compare_cells(fsdp: list[dict], ddp: list[dict], world: int = 2) -> tuple[list[str], list[str]]:
    """(the lines to print, the failures) for the trained cells of two results folders' cell JSONs.

    Each FSDP cell is paired with the DDP cell of the same model, strategy, parameters and seed; every metric
    either cell evaluated must be there in both, and the FSDP value must lie inside the DDP cell's 95% interval
    [ci_low, ci_high]. A cell without a twin, not ok, trained under another backend or world size, or without
    usage.per_rank fails too."""
    trained = [{_key(r): r for r in cells if r["cell"]["strategy"] != "base"} for cells in (fsdp, ddp)]
    failures = [f"{b} cell {r['label']}: no {o} cell of the same model, strategy, parameters and seed"
                for b, o, mine, other in (("fsdp", "ddp", *trained), ("ddp", "fsdp", *trained[::-1]))
                for k, r in mine.items() if k not in other]
    if not trained[0]:
        failures.append("no trained fsdp cell")
    lines = [f"{'cell':<26}{'metric':<24}{'FSDP':>12}{'DDP':>12}  {'DDP 95% interval':<26}inside"]
    ranks = [f"{'cell':<26}{'rank':>5}{'held B FSDP':>16}{'DDP':>14}{'FSDP/DDP':>10}{'local frac':>11}"
             f"{'peak MB FSDP':>14}{'DDP':>8}{'RSS MB FSDP':>13}"]
    for key, f in sorted(trained[0].items()):
        if (d := trained[1].get(key)) is None:
            continue
        problems = _cell_problems(f, "fsdp", world) + _cell_problems(d, "ddp", world)
        failures += problems
        if problems:
            continue
        metric_lines, metric_failures = _metric_rows(f, d)
        lines += metric_lines
        failures += metric_failures
        ranks += _rank_rows(f, d)
    ranks[0:0] = ["", "per rank, as each cell JSON records it (usage.per_rank; held: params + grads + optimizer "
                      "states):"]
    return lines + ranks, failures


def matrices(out: Path) -> list[str]:
    """Run fsdp-smoke and its DDP twin through `harness run`; the comparison's failures (printed with its lines)."""
    from harness import store

    print(f"\nthe matrix path: {MATRIX.relative_to(REPO)} under fsdp and under ddp, results in {out}")
    env = {**os.environ, "PYTHONPATH": str(REPO), "TOKENIZERS_PARALLELISM": "false"}
    cells = {}
    for backend, cmd, folder in matrix_commands(out):
        log = out / f"{backend}.log"
        print(f"$ {' '.join(cmd)}  (log: {log})", flush=True)
        with log.open("w", encoding="utf-8") as f:
            done = subprocess.run(cmd, env=env, cwd=REPO, stdout=f, stderr=subprocess.STDOUT)
        if done.returncode:
            print(f"  exit status {done.returncode}; the end of its log:\n{log.read_text('utf-8')[-2000:]}")
        cells[backend] = store.load_all(folder)
    lines, failures = compare_cells(cells["fsdp"], cells["ddp"])
    print("\n".join(lines))
    if failures:
        print("\nFAILED:\n" + "\n".join(f"  {f}" for f in failures))
    else:
        print("\nevery metric of every FSDP cell lies inside the DDP cell's 95% interval")
    return failures


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=9000, help="tokens per run (16 steps; 13000: ~23)")
    ap.add_argument("--out", help="folder for the matrix path's results (default: a new temporary folder, kept); "
                                  "cells already finished there are reused, as `harness run` resumes")
    ap.add_argument("--matrix-only", action="store_true", help="only the matrix path, not the loss curves")
    args = ap.parse_args(argv)
    if not args.matrix_only:
        curves(args.tokens)
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="fsdp-vs-ddp-matrix-"))
    return 1 if matrices(out.resolve()) else 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        backend, strategy, params, tokens, out = sys.argv[2:7]
        worker(backend, strategy, json.loads(params), int(tokens), Path(out))
    else:
        sys.exit(main())
