"""GPU benchmark parts for `benchmarks/gpu.sh`: matmul rate, training per strategy, FSDP2, eval per suite, the report.

Each part is its own process (gpu.sh gives each a timeout) and writes one JSON file; `report`
turns the files into a markdown section for benchmarks/RESULTS.md. The model is SmolLM2-135M's
shape with random weights (throughput and memory do not depend on the values; the device has
neither the converted folder nor a network), with the tiny world's tokenizer and data, or a
folder given with --model. Training is the harness's own `train` (Trainer, bf16 autocast on
CUDA) on the real-model matrix's strategies (matrices/smollm2-135m.yaml: full, LoRA r=16, QLoRA
4-bit NF4, adapter, prefix) at a fixed token budget; evaluation is `run_suites` per suite with
the smoke matrix's eval settings at a small limit. The `fsdp` part runs under torchrun with one
process: full fine-tuning through `train.distributed: {backend: fsdp}` (harness/distributed.py:
fully_shard on CUDA, the sharding check, the per-rank bytes, the gather to rank 0), with the
FSDP2 mixed precision bf16 and none, its held bytes and CUDA peak beside the dry-run's per-rank
estimate. One GPU cannot show the sharding across ranks; it shows that the path runs on CUDA.

    python benchmarks/gpu_bench.py model --dir /tmp/m
    python benchmarks/gpu_bench.py matmul --json out/matmul.json
    python benchmarks/gpu_bench.py train --model /tmp/m --strategy lora --json out/train-lora.json
    python benchmarks/gpu_bench.py eval --model /tmp/m --json out/eval.json
    python -m torch.distributed.run --standalone --nproc_per_node=1 benchmarks/gpu_bench.py fsdp \
        --model /tmp/m --json out/fsdp.json
    python benchmarks/gpu_bench.py report --dir out --output out/gpu-results.md
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run from a checkout: `python benchmarks/gpu_bench.py`

TINY_TOKENIZER = REPO / "harness" / "zoo" / "tiny-world" / "model"
REAL_MATRIX = REPO / "matrices" / "smollm2-135m.yaml"
SMOKE_MATRIX = REPO / "matrices" / "smoke.yaml"
STRATEGIES = ("full", "lora", "qlora", "adapter", "prefix")
FSDP_PRECISIONS = ("bf16", "none")  # train.distributed.fsdp.mixed_precision, bf16 first: the one a GPU run uses
SMOLLM2_SHAPE = dict(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                     num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=8192,
                     rms_norm_eps=1e-5, rope_theta=100000.0, tie_word_embeddings=True)  # its config.json


def smollm2_config(**overrides):
    """A LlamaConfig at SmolLM2-135M's dimensions (30 layers, hidden 576, 9/3 heads, MLP 1536, vocab 49152)."""
    from transformers import LlamaConfig

    return LlamaConfig(**{**SMOLLM2_SHAPE, **overrides})


def write_model(folder: Path, seed: int = 0, **overrides) -> Path:
    """A random-init SmolLM2-shape model (safetensors) with the tiny world's tokenizer, loadable by models.load."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(TINY_TOKENIZER)
    if len(tok) > SMOLLM2_SHAPE["vocab_size"]:
        raise ValueError(f"{TINY_TOKENIZER}: tokenizer has {len(tok)} tokens, more than SmolLM2's vocabulary")
    config = smollm2_config(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                            pad_token_id=tok.pad_token_id, **overrides)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    return folder


def strategy_entries() -> list[dict]:
    """The real-model matrix's strategy entries this benchmark runs, LoRA at r=16 (the QLoRA rank) only."""
    raw = yaml.safe_load(REAL_MATRIX.read_text("utf-8"))["strategies"]
    out = []
    for entry in raw:
        if entry["name"] not in STRATEGIES:
            continue  # bitfit: SmolLM2 has no bias terms, not applicable
        if entry["name"] == "lora":
            entry = {**entry, "params": {**entry.get("params", {}), "r": 16}}
        out.append(entry)
    return out


def matrix_cells(model: Path, work: Path, tokens: int, batch_size: int | None, eval_limit: int):
    """Cells of a matrix on `model`: the real matrix's strategies and train settings, the smoke matrix's eval."""
    from harness.config import load_matrix
    from harness.matrix import expand

    real = yaml.safe_load(REAL_MATRIX.read_text("utf-8"))
    smoke = yaml.safe_load(SMOKE_MATRIX.read_text("utf-8"))
    train = {**real["train"], **({"batch_size": batch_size} if batch_size else {})}
    ev = {**smoke["eval"], "limit": eval_limit}
    ev["benchmarks"] = {**ev["benchmarks"], "tasks": [{**t, "limit": 2} for t in ev["benchmarks"]["tasks"]]}
    doc = {"name": "gpu-bench", "models": str(model.resolve()), "data": smoke["data"], "budget": {"tokens": tokens},
           "train": train, "strategies": strategy_entries(), "seeds": [0], "eval": ev}
    path = work / "gpu-bench.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return expand(load_matrix(path), work)


def require_cuda() -> None:
    import torch

    if not torch.cuda.is_available():
        sys.exit(f"gpu_bench: CUDA is not available (torch {torch.__version__}, built for CUDA "
                 f"{torch.version.cuda or 'none'}): this benchmark needs one NVIDIA GPU")


def matmul_rate(size: int = 8192, iters: int = 30) -> dict:
    """bf16 matmul throughput of the device: `iters` square products after a warm-up, TFLOP/s."""
    import torch

    a, b = (torch.randn(size, size, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    for _ in range(5):
        a @ b
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(iters):
        a @ b
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return {"size": size, "iters": iters, "seconds": seconds, "tflops": 2 * size**3 * iters / seconds / 1e12,
            "device": torch.cuda.get_device_name(), "torch": torch.__version__, "cuda": torch.version.cuda}


def train_one(cell, work: Path, after=None) -> dict:
    """Load, prepare and train one cell as the runner does; tokens/s, FLOPs and CUDA peak memory (None on CPU).

    `after(model, examples, rebuild)`, called once the peak is read, adds its dict to the result; `rebuild()`
    loads and prepares the cell's model again (what harness.distributed.full_model loads the gathered weights into).
    """
    import torch

    import strategies  # noqa: F401
    from harness import memory, models
    from harness.data.prepare import prepare_train
    from harness.matrix import resolve_params
    from harness.train import train
    from strategies.base import STRATEGIES as REGISTRY

    strategy = REGISTRY.get(cell.strategy)()
    params = resolve_params(strategy.Params, cell.params)
    if torch.cuda.is_available():  # the parts run on CPU too (tests), with no peak to report
        torch.cuda.reset_peak_memory_stats()
    load_kwargs = strategy.load_kwargs(params)
    model, tok = models.load(cell.model, Path(cell.root), **load_kwargs)
    if reason := strategy.check(model, params):
        return {"strategy": cell.label, "skipped": reason}
    model = strategy.prepare(model, params)
    examples = prepare_train(cell, tok, work, progress=lambda *a: None)
    usage = train(model, tok, examples, cell.train, cell.budget, seed=cell.seed, workdir=work / "trainer")
    estimate = memory.estimate(cell) or {}
    peak = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
    out = {"strategy": cell.label, "tokens": usage["tokens"], "seconds": usage["seconds"],
           "tokens_per_second": usage["tokens_per_second"], "flops": usage["flops"], "peak_allocated_mb": peak,
           "estimate_mb": estimate.get("total_mb"), "batch_size": cell.train.batch_size, "steps": usage["steps"],
           "backend": usage["backend"], "world_size": usage["world_size"], "per_rank": usage["per_rank"],
           "estimate": {k: v for k, v in estimate.items() if k.endswith("_mb")}}
    if after is not None:
        out.update(after(model, examples, lambda: strategy.prepare(
            models.load(cell.model, Path(cell.root), **load_kwargs)[0], params)))
    return out


def fsdp_cell(cell, mixed_precision: str):
    """The cell trained under `train.distributed: {backend: fsdp}` with FSDP2's mixed precision `mixed_precision`."""
    from harness.config import TrainSpec

    spec = TrainSpec.model_validate({**cell.train.model_dump(), "distributed": {
        "backend": "fsdp", "fsdp": {"mixed_precision": mixed_precision}}})
    return cell.model_copy(update={"train": spec})


def gathered(model, examples, rebuild) -> dict:
    """The trained FSDP2 model gathered to rank 0 as a plain one (harness.distributed.full_model, as a cell does
    before it evaluates): how many DTensors it still holds (0) and its loss on the first example beside the sharded
    model's (the same weights; bf16 mixed precision computes the sharded one in bf16)."""
    import torch
    from torch.distributed.tensor import DTensor

    from harness.distributed import full_model

    device = next(model.parameters()).device
    batch = {k: torch.tensor([examples[0][k]], device=device) for k in ("input_ids", "labels")}
    model.eval()
    with torch.no_grad():
        sharded = model(**batch).loss.item()
        plain = full_model(model, rebuild).to(device).eval()  # world size 1: this process is rank 0
        loss = plain(**batch).loss.item()
    return {"gathered": {"dtensors": sum(isinstance(p, DTensor) for p in plain.parameters()), "loss_sharded": sharded,
                         "loss_gathered": loss}}


def fsdp_runs(cell, work: Path, out: Path, precisions=FSDP_PRECISIONS) -> dict:
    """Full fine-tuning of `cell` under FSDP2 once per mixed precision, in this process (torchrun's one rank).

    `out` is rewritten after each run, so that a run the part's timeout cuts short leaves the earlier ones; a run
    that raises is recorded with its error and the next still runs."""
    import gc

    import torch

    if "LOCAL_RANK" not in os.environ:
        sys.exit("gpu_bench fsdp: run it under torchrun (python -m torch.distributed.run --standalone "
                 "--nproc_per_node=1 benchmarks/gpu_bench.py fsdp ...): FSDP2 needs a process group")
    doc = {"launch": "torchrun --standalone --nproc_per_node=1", "runs": []}
    for mp in precisions:
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        before = torch.cuda.memory_allocated() / 2**20 if torch.cuda.is_available() else None
        try:
            run = train_one(fsdp_cell(cell, mp), work / f"fsdp-{mp}", after=gathered)
        except Exception as e:  # recorded, and the report shows it; the part still exits 1
            run = {"error": f"{type(e).__name__}: {e}"[:500]}
        doc["runs"].append({"mixed_precision": mp, "allocated_before_mb": before, **run})
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(doc, indent=1), encoding="utf-8")
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()
    return doc


def eval_suites(cell) -> dict:
    """Seconds per suite of `run_suites` on the model in GPU memory (each suite alone, timed to a synchronize).

    The harness's base cell does not move its model to the GPU itself (models.load keeps it where it loads;
    Trainer moves trained models): here it is moved, to time the suites on the device."""
    import torch

    from harness import models
    from harness.evals.evaluate import run_suites

    model, tok = models.load(cell.model, Path(cell.root))
    cuda = torch.cuda.is_available()
    model.to("cuda" if cuda else "cpu")
    out = {}
    for suite in cell.eval.suites:
        one = cell.model_copy(update={"eval": cell.eval.model_copy(update={"suites": [suite]})})
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        run_suites(model, tok, one, progress=lambda *a, **k: None)
        if cuda:
            torch.cuda.synchronize()
        out[suite] = time.perf_counter() - start
    return {"limit": cell.eval.limit, "seconds": out}


def _read(folder: Path, name: str) -> dict | None:
    path = folder / name
    return json.loads(path.read_text("utf-8")) if path.is_file() else None


def _peak_vs_estimate(r: dict) -> str:
    """Three table cells: the CUDA peak, the dry-run estimate, their ratio (n/a where either is missing)."""
    peak, est = r["peak_allocated_mb"], r["estimate_mb"]
    vs = f"{est:,.0f} | " + (f"{peak / est:.2f}x" if peak else "n/a") if est else "n/a | n/a"
    return f"{f'{peak:,.0f}' if peak else 'n/a'} | {vs}"


def _mb_sum(parts: list[float]) -> str:
    return " + ".join(f"{x:,.0f}" for x in parts) + f" = {sum(parts):,.0f}"


def fsdp_rows(doc: dict | None) -> list[str]:
    """The FSDP2 part's table: per mixed precision, what rank 0 held against the estimate, the peak, the gather."""
    lines = ["", "FSDP2 (`train.distributed: {backend: fsdp}`, full fine-tuning, one rank under "
             "`torchrun --standalone --nproc_per_node=1`: the CUDA path, not the sharding across ranks):", "",
             "| FSDP2 mixed precision | tokens | tok/s | backend (world) | local fraction | held MB: params + grads + "
             "optimizer | estimate MB: weights + grads + optimizer | peak allocated MB | dry-run estimate MB | "
             "peak / estimate | gathered to rank 0 |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    runs = {r["mixed_precision"]: r for r in (doc or {}).get("runs", [])}
    for mp in FSDP_PRECISIONS:
        r = runs.get(mp)
        if r is None:
            why = "failed or timed out" if doc is None else "the part stopped before it"
            lines.append(f"| {mp} | not run ({why}: see gpu.log) | | | | | | | | | |")
            continue
        if "error" in r:
            lines.append(f"| {mp} | failed: {r['error'].replace('|', '/')} | | | | | | | | | |")
            continue
        rank0, est, g = r["per_rank"][0], r["estimate"], r["gathered"]
        held = _mb_sum([rank0[k] / 2**20 for k in ("param_bytes", "grad_bytes", "optim_bytes")])
        estimated = _mb_sum([est[k] for k in ("weights_mb", "gradients_mb", "optimizer_mb")])
        lines.append(f"| {mp} | {r['tokens']:,} | {r['tokens_per_second']:,.0f} | {r['backend']} ({r['world_size']}) "
                     f"| {rank0['local_fraction']:.3f} | {held} | {estimated} | {_peak_vs_estimate(r)} | "
                     f"{g['dtensors']} DTensors; loss {g['loss_gathered']:.4f} (sharded {g['loss_sharded']:.4f}) |")
    return lines


def markdown(folder: Path, device: str | None = None) -> str:
    """The results section from the parts' JSON files under `folder`; a missing part is named as not run."""
    mm = _read(folder, "matmul.json")
    meta = _read(folder, "meta.json") or {}
    rate = mm["tflops"] if mm else None
    name = device or (mm or {}).get("device") or "unknown device"
    tokens = f"{meta['tokens']:,}" if "tokens" in meta else "?"
    trained = [r for s in STRATEGIES if (r := _read(folder, f"train-{s}.json")) and "batch_size" in r]
    batch = f", batch {trained[0]['batch_size']}" if trained else ""
    lines = [f"## GPU: {name} ({meta.get('date') or datetime.date.today().isoformat()})", "",
             f"Model: {meta.get('model', 'SmolLM2-135M shape, random init')}; budget {tokens} "
             f"tokens per strategy{batch}; Trainer with bf16 autocast; "
             + (f"torch {mm['torch']}, CUDA {mm['cuda']}." if mm else "matmul part not run."),
             f"Command: `{meta.get('command', 'benchmarks/gpu.sh')}`", ""]
    lines.append(f"Measured bf16 matmul ({mm['size']}x{mm['size']}, {mm['iters']} products): "
                 f"**{rate:.0f} TFLOP/s**." if mm else "bf16 matmul rate: not measured (part failed or timed out).")
    lines += ["", "| strategy | tokens | tok/s | model TFLOP/s | MFU | peak allocated MB | dry-run estimate MB | "
              "peak / estimate |", "|---|---|---|---|---|---|---|---|"]
    for s in STRATEGIES:
        r = _read(folder, f"train-{s}.json")
        if r is None:
            lines.append(f"| {s} | not run (failed or timed out: see gpu.log) | | | | | | |")
        elif "skipped" in r:
            lines.append(f"| {r['strategy']} | {r['skipped']} | | | | | | |")
        else:
            achieved = r["flops"] / r["seconds"] / 1e12 if r["seconds"] else 0.0
            mfu = f"{achieved / rate:.1%}" if rate else "n/a"
            lines.append(f"| {r['strategy']} | {r['tokens']:,} | {r['tokens_per_second']:,.0f} | {achieved:.1f} | "
                         f"{mfu} | {_peak_vs_estimate(r)} |")
    lines += fsdp_rows(_read(folder, "fsdp.json"))
    ev = _read(folder, "eval.json")
    lines += ["", "| eval suite | seconds |", "|---|---|"]
    if ev:
        lines += [f"| {suite} (limit {ev['limit']}) | {sec:.1f} |" for suite, sec in ev["seconds"].items()]
        lines.append(f"| **total** | {sum(ev['seconds'].values()):.1f} |")
    else:
        lines.append("| not run (failed or timed out: see gpu.log) | |")
    lines += ["", "MFU: the harness's training FLOPs (harness/flops.py: 6N per token full, 4N + 2T frozen base) per "
              "second over the measured matmul rate. Peak: torch.cuda.max_memory_allocated over load, prepare and "
              "training; the estimate is harness/memory.py's (what `harness run --dry-run` prints), at the longest "
              "sequence (data.max_length) where batches here pad to their longest row. FSDP2's held bytes are "
              "rank 0's local parameter, gradient (before the first optimizer step) and optimizer-state tensors "
              "(harness/distributed.py `local_bytes`, what a cell records in usage.per_rank); with one rank they are "
              "the whole model's, as is the per-rank estimate.", ""]
    return "\n".join(lines)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="part", required=True)
    p = sub.add_parser("model", help="write the random-init SmolLM2-shape model folder")
    p.add_argument("--dir", type=Path, required=True)
    p = sub.add_parser("matmul", help="the device's bf16 matmul rate")
    p.add_argument("--size", type=int, default=8192)
    p.add_argument("--iters", type=int, default=30)
    p.add_argument("--json", type=Path, required=True)
    for name in ("train", "eval", "fsdp"):
        p = sub.add_parser(name, help=f"{name} on the GPU" if name != "fsdp" else
                           "full fine-tuning under FSDP2 (bf16 and no mixed precision), under torchrun")
        p.add_argument("--model", type=Path, required=True, help="model folder (the `model` part's, or a real one)")
        p.add_argument("--tokens", type=int, default=6000, help="training token budget per strategy")
        p.add_argument("--batch-size", type=int, help="default: the real-model matrix's")
        p.add_argument("--eval-limit", type=int, default=16, help="items per eval suite")
        p.add_argument("--json", type=Path, required=True)
        if name == "train":
            p.add_argument("--strategy", choices=STRATEGIES, required=True)
    p = sub.add_parser("report", help="markdown section from the parts' JSON files")
    p.add_argument("--dir", type=Path, required=True)
    p.add_argument("--device", help="device name for the heading (default: torch's)")
    p.add_argument("--output", type=Path)
    args = ap.parse_args(argv)
    for key in ("tokens", "batch_size", "eval_limit", "size", "iters"):
        if getattr(args, key, None) is not None and getattr(args, key) < 1:
            ap.error(f"--{key.replace('_', '-')} must be at least 1, got {getattr(args, key)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.part == "report":
        text = markdown(args.dir, args.device)
        if args.output:
            args.output.write_text(text, encoding="utf-8")
        print(text)
        return 0
    if args.part == "model":
        write_model(args.dir)
        print(f"wrote {args.dir}")
        return 0
    require_cuda()
    if args.part == "matmul":
        out = matmul_rate(args.size, args.iters)
    else:
        if not (args.model / "config.json").is_file():
            sys.exit(f"gpu_bench: {args.model}: no config.json; give a model folder (the `model` part writes one)")
        work = Path(tempfile.mkdtemp(prefix="gpu-bench-"))
        cells = matrix_cells(args.model, work, args.tokens, args.batch_size, args.eval_limit)
        if args.part == "fsdp":  # writes args.json itself, after each run
            out = fsdp_runs(next(c for c in cells if c.strategy == "full"), work, args.json)
            print(json.dumps(out))
            return 1 if any("error" in r for r in out["runs"]) else 0
        if args.part == "train":
            out = train_one(next(c for c in cells if c.strategy == args.strategy), work)
        else:
            out = eval_suites(next(c for c in cells if c.strategy == "base"))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=1), encoding="utf-8")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
