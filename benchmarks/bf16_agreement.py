"""Benchmark bf16 autocast against float32: what `eval.bf16` and `train.bf16` save in time, and what they move.

One process, each model loaded once for evaluation. For each `--world`:

- evaluation: the matrix's base cell (its eval settings, `--limit` items per suite and `--bench-limit` docs per
  lm-eval task) runs each suite through `run_suites` with eval.bf16 false and true, alternating who goes first,
  `--repeats` times; the median wall seconds count. Per-item agreement is read from the first run of each: items
  whose 0/1 score flips (accuracy, exact match, refusal, helpfulness), how far each perplexity and bits per byte
  move (the metric, and the largest per-document NLL change, relative), ROUGE/BLEU/chrF deltas (the metric, and
  the largest sentence score change), replies that differ and how far their coherence perplexities move;
- training: LoRA r=16 (and full fine-tuning, except on Qwen) with the matrix's train settings and learning rates,
  `--train-tokens` tokens from seed 0, train.bf16 false and true, alternating, `--repeats` times: median tokens/s
  and the largest relative difference between the two loss curves (first run of each).

Disagreement is what this measures, not a failure: the script exits nonzero only on errors. A world whose model
is not cached or whose data is absent is skipped with a message.

    OMP_NUM_THREADS=2 python benchmarks/bf16_agreement.py --world tiny
    OMP_NUM_THREADS=2 python benchmarks/bf16_agreement.py --world smollm2 qwen --append-results
"""

from __future__ import annotations

import argparse
import datetime
import math
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]  # the harness, and eval_overhead's helpers beside this file

# world -> (matrix file whose cell this is, zoo model, strategies trained); Qwen takes SmolLM2's cell, LoRA only
WORLDS = {"tiny": ("smoke.yaml", "tiny-world", ("lora", "full")),
          "smollm2": ("smollm2-135m.yaml", "smollm2-135m-instruct", ("lora", "full")),
          "qwen": ("smollm2-135m.yaml", "qwen2.5-coder-0.5b-instruct", ("lora",))}
DEFAULT_LIMITS = {"tiny": (16, 2), "smollm2": (16, 1), "qwen": (16, 1)}  # items per suite, docs per lm-eval task
DEFAULT_TRAIN_TOKENS = {"tiny": 4000, "smollm2": 2000, "qwen": 2000}  # a few optimizer steps at the file's batch
LORA_RANK = 16
POINTS = ("checkpoints", "interpolate", "point_suites", "tradeoff", "noise_from")  # no points: the base cell only
FLIPS = re.compile(r"acc|exact_match|refusal|helpful")  # per-item 0/1 scores: count the items that change
REPLIES = ("_predictions", "_refusal_harmful_replies", "_refusal_benign_replies")
REPLY_PPL = ("_refusal_harmful_reply_ppl", "_refusal_benign_reply_ppl")
PRECISIONS = ("fp32", "bf16")


def cells(world: str, limit: int | None, bench_limit: int | None, train_tokens: int) -> tuple:
    """(base cell, trained cells) of the world's matrix on its model: the eval settings at these limits, LoRA at
    rank 16 and full fine-tuning as the file trains them, `train_tokens` each, seed 0, no tuning and no points."""
    from harness.config import ConfigError, validate_matrix
    from harness.matrix import expand

    name, model, trained = WORLDS[world]
    path = REPO / "matrices" / name
    doc = yaml.safe_load(path.read_text("utf-8"))
    entries = []
    for kind in trained:
        entry = next(e for e in doc["strategies"] if isinstance(e, dict) and e["name"] == kind)
        entries.append({**entry, "params": {**entry.get("params", {}), "r": LORA_RANK}} if kind == "lora" else entry)
    ev = {k: v for k, v in doc["eval"].items() if k not in POINTS}
    ev["limit"] = limit or ev.get("limit")
    if ev.get("benchmarks") and bench_limit:
        tasks = [{**t, "limit": bench_limit} for t in ev["benchmarks"]["tasks"]]
        ev["benchmarks"] = {**ev["benchmarks"], "tasks": tasks}
    doc = {**{k: v for k, v in doc.items() if k != "tuning"}, "name": f"bf16-{world}", "models": model,
           "strategies": entries, "seeds": [0], "budget": {"tokens": train_tokens}, "eval": ev}
    spec, _, problems = validate_matrix(doc, str(path))
    if problems:
        raise ConfigError("\n".join(problems))
    out = expand(spec, path.parent)
    return out[0], out[1:]


def with_bf16(cell, section: str, on: bool):
    """The cell with `section`.bf16 (eval or train) set."""
    part = getattr(cell, section)
    return cell.model_copy(update={section: part.model_copy(update={"bf16": on})})


# ---- evaluation --------------------------------------------------------------------------------------------------

def suite_run(model, tok, cell, suite: str, bf16: bool) -> tuple[dict, dict, float]:
    """(metrics, items, wall seconds) of one suite through run_suites, eval.bf16 as given."""
    from harness.evals.evaluate import run_suites

    one = with_bf16(cell, "eval", bf16)
    one = one.model_copy(update={"eval": one.eval.model_copy(update={"suites": [suite]})})
    start = time.perf_counter()
    metrics, items = run_suites(model, tok, one, progress=lambda *a, **k: None)
    return metrics, items, time.perf_counter() - start


def evaluate(model, tok, cell, suites: list[str], repeats: int) -> dict:
    """{suite: {"seconds": {precision: [...]}, "first": {precision: (metrics, items)}}}, runs alternating."""
    out = {s: {"seconds": {p: [] for p in PRECISIONS}, "first": {}} for s in suites}
    for rep in range(repeats):
        for suite in suites:
            for precision in PRECISIONS[::1 if rep % 2 == 0 else -1]:  # who goes first alternates
                metrics, items, seconds = suite_run(model, tok, cell, suite, precision == "bf16")
                out[suite]["seconds"][precision].append(seconds)
                out[suite]["first"].setdefault(precision, (metrics, items))
    return out


def _relative(a: float, b: float) -> float:
    return abs(b - a) / abs(a) if a else (0.0 if a == b else math.inf)


def agreement(fp32: tuple[dict, dict], bf16: tuple[dict, dict]) -> list[dict]:
    """One row per metric (and per reply list) of a suite: n, the two values, the change, and the per-item view."""
    (m32, i32), (m16, i16) = fp32, bf16
    rows = []
    for name in m32:
        a, b = i32[name], i16[name]
        row = {"metric": name, "n": m32[name]["n"], "fp32": m32[name]["value"], "bf16": m16[name]["value"]}
        if name.startswith("ppl_"):  # (NLL sums, token or byte counts) per document
            row["change"] = f"{(row['bf16'] - row['fp32']) / row['fp32']:+.3%}"
            row["items"] = f"NLL max {max(map(_relative, a[0], b[0]), default=0.0):.3%}"
        elif FLIPS.search(name):
            row["change"] = f"{row['bf16'] - row['fp32']:+.3f}"
            row["items"] = f"{sum(x != y for x, y in zip(a, b, strict=True))}/{len(a)} flip"
        else:  # ROUGE, BLEU, chrF: sentence scores
            row["change"] = f"{row['bf16'] - row['fp32']:+.3f}"
            row["items"] = f"max abs {max((abs(x - y) for x, y in zip(a, b, strict=True)), default=0.0):.3f}"
        rows.append(row)
    for name in REPLIES:
        if name in i32:
            a, b = i32[name], i16[name]
            rows.append({"metric": name, "n": len(a), "items": f"{sum(x != y for x, y in zip(a, b, strict=True))}/"
                                                               f"{len(a)} differ"})
    for name in REPLY_PPL:
        if name in i32:
            pairs = list(zip(i32[name], i16[name], strict=True))
            moved = [_relative(x, y) for x, y in pairs if x is not None and y is not None]
            scored = sum((x is None) != (y is None) for x, y in pairs)
            one_side = f", {scored} scored on one side" if scored else ""
            rows.append({"metric": name, "n": len(pairs), "items": f"max {max(moved, default=0.0):.3%}{one_side}"})
    return rows


# ---- training ----------------------------------------------------------------------------------------------------

def train_run(cell, examples: list[dict], bf16: bool, work: Path) -> dict:
    """Load, prepare and train the cell as the runner does, from its seed, train.bf16 as given."""
    from transformers import set_seed

    import strategies  # noqa: F401  (registers the built-ins)
    from harness import models
    from harness.matrix import resolve_params
    from harness.train import train
    from strategies.base import STRATEGIES

    cell = with_bf16(cell, "train", bf16)
    strategy = STRATEGIES.get(cell.strategy)()
    params = resolve_params(strategy.Params, cell.params)
    set_seed(cell.seed)
    model, tok = models.load(cell.model, Path(cell.root), **strategy.load_kwargs(params))
    model = strategy.prepare(model, params)
    return train(model, tok, examples, cell.train, cell.budget, seed=cell.seed, workdir=work / "trainer")


def training(trained: list, repeats: int, work: Path) -> list[dict]:
    """Per trained cell: steps, median tokens/s per precision, both loss curves (first runs), alternating."""
    from harness import models
    from harness.data.prepare import prepare_train

    _, tok = models.load(trained[0].model, Path(trained[0].root))
    examples = prepare_train(trained[0], tok, work, progress=lambda *a: None)  # the same rows for every cell
    out = []
    for cell in trained:
        rates: dict[str, list[float]] = {p: [] for p in PRECISIONS}
        curves: dict[str, list[float]] = {}
        steps = 0
        for rep in range(repeats):
            for precision in PRECISIONS[::1 if rep % 2 == 0 else -1]:
                usage = train_run(cell, examples, precision == "bf16", work)
                rates[precision].append(usage["tokens_per_second"])
                curves.setdefault(precision, usage["loss_curve"])
                steps = usage["steps"]
        out.append({"strategy": cell.label, "steps": steps, "tokens": cell.budget["tokens"],
                    "tokens_per_second": {p: statistics.median(v) for p, v in rates.items()}, "curves": curves})
    return out


def loss_difference(curves: dict[str, list[float]]) -> float:
    """The largest relative difference between the two loss curves, step by step."""
    return max(map(_relative, curves["fp32"], curves["bf16"]), default=0.0)


# ---- report ------------------------------------------------------------------------------------------------------

def _number(x: float) -> str:
    return f"{x:.4g}" if isinstance(x, float) else str(x)


def speed_rows(model: str, runs: dict) -> list[str]:
    total = dict.fromkeys(PRECISIONS, 0.0)
    rows = []
    for suite, run in runs.items():
        med = {p: statistics.median(v) for p, v in run["seconds"].items()}
        total = {p: total[p] + med[p] for p in PRECISIONS}
        rows.append(f"| {model} | {suite} | {med['fp32']:.2f} | {med['bf16']:.2f} | "
                    f"{med['fp32'] / med['bf16']:.2f}x |")
    rows.append(f"| {model} | **total** | {total['fp32']:.2f} | {total['bf16']:.2f} | "
                f"{total['fp32'] / total['bf16']:.2f}x |")
    return rows


def tables(results: list[dict]) -> list[str]:
    """The three markdown tables: evaluation speed, per-item agreement, training."""
    lines = ["| model | suite | fp32 s | bf16 s | speed-up |", "|---|---|---|---|---|"]
    for r in results:
        lines += speed_rows(r["model"], r["eval"])
    lines += ["", "| model | suite | metric | n | fp32 | bf16 | change | per item |",
              "|---|---|---|---|---|---|---|---|"]
    for r in results:
        for suite, run in r["eval"].items():
            for row in agreement(run["first"]["fp32"], run["first"]["bf16"]):
                lines.append(f"| {r['model']} | {suite} | {row['metric']} | {row['n']} | "
                             f"{_number(row.get('fp32', ''))} | {_number(row.get('bf16', ''))} | "
                             f"{row.get('change', '')} | {row['items']} |")
    lines += ["", "| model | strategy | tokens | steps | fp32 tok/s | bf16 tok/s | speed-up | loss max rel. diff |",
              "|---|---|---|---|---|---|---|---|"]
    for r in results:
        for t in r["train"]:
            rate = t["tokens_per_second"]
            lines.append(f"| {r['model']} | {t['strategy']} | {t['tokens']:,} | {t['steps']} | {rate['fp32']:,.0f} | "
                         f"{rate['bf16']:,.0f} | {rate['bf16'] / rate['fp32']:.2f}x | "
                         f"{loss_difference(t['curves']):.3%} |")
    return lines


def append_results(path: Path, title: str, lines: list[str], command: str) -> None:
    from eval_overhead import machine, versions

    section = [f"\n## bf16 autocast against float32: {title} ({datetime.date.today().isoformat()})", "",
               f"Machine: {machine()}; {versions()}.", f"Command: `{command}`", "", *lines, ""]
    with path.open("a", encoding="utf-8") as f:
        f.write("\n".join(section))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--world", nargs="+", choices=sorted(WORLDS), default=["tiny"],
                    help="the models to measure, one after another (tiny: the smoke matrix; smollm2 and qwen: "
                         "matrices/smollm2-135m.yaml's cell on that model)")
    ap.add_argument("--limit", type=int, help="items per suite (default 16)")
    ap.add_argument("--bench-limit", type=int, help="docs per lm-eval task (default: tiny 2, else 1 per subject)")
    ap.add_argument("--train-tokens", type=int, help="training tokens per run (default: tiny 4,000, else 2,000)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs of each precision, alternating; medians count")
    ap.add_argument("--append-results", action="store_true", help="append the tables to benchmarks/RESULTS.md")
    args = ap.parse_args(argv)
    if args.repeats < 1:
        ap.error("--repeats must be at least 1")
    from eval_overhead import offline_threads, suites_of, unavailable

    offline_threads()

    import torch

    from harness import models

    results = []
    for world in dict.fromkeys(args.world):
        limit, bench = DEFAULT_LIMITS[world]
        base, trained = cells(world, args.limit or limit, args.bench_limit or bench,
                              args.train_tokens or DEFAULT_TRAIN_TOKENS[world])
        if why := unavailable(base):
            print(f"skipped {world}: {why}")
            continue
        print(f"{world}: evaluating {base.model.id} ({args.repeats} repeats)", flush=True)
        model, tok = models.load(base.model, Path(base.root))
        model.eval()
        with torch.no_grad():
            runs = evaluate(model, tok, base, suites_of(base), args.repeats)
        del model
        print(f"{world}: training {', '.join(c.label for c in trained)}", flush=True)
        with tempfile.TemporaryDirectory(prefix="bf16-agreement-") as work:
            results.append({"model": base.model.id, "eval": runs, "train": training(trained, args.repeats, Path(work)),
                            "sizes": f"eval.limit {base.eval.limit}, benchmark limit "
                                     f"{base.eval.benchmarks.tasks[0].limit if base.eval.benchmarks else None}, "
                                     f"{trained[0].budget['tokens']:,} training tokens"})
    if not results:
        return 0
    title = (f"{'; '.join(r['model'] + ' (' + r['sizes'] + ')' for r in results)}; {args.repeats} repeats, medians, "
             f"{torch.get_num_threads()} threads")
    lines = tables(results)
    print(title)
    print("\n".join(lines))
    if args.append_results:
        command = "python benchmarks/bf16_agreement.py " + " ".join(argv if argv is not None else sys.argv[1:])
        append_results(REPO / "benchmarks" / "RESULTS.md", title, lines, command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
