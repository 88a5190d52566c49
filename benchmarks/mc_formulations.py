"""Letter against cloze: which multiple-choice form puts a real model above chance, measured before choosing one.

lm-eval scores a multiple-choice item in one of two forms: the letter form (the options listed, the model scores
" A" .. " D") and the cloze form (the model scores each option's text as the continuation; acc_norm divides by its
length). Small models often sit at chance in one form and not the other (OLMES), so a matrix's form is a choice
to measure. For each model, the base cell of `--matrix` (default matrices/swap.yaml, its items: the same
`limit` per task) runs the benchmarks suite once per form, MMLU, C-Eval and CMMLU in that form; printed per task
and form: accuracy with its 95% interval (grouped Wilson, as the leaderboard's), whether the interval lies above
chance (0.25, from harness.suites), and the suite's wall seconds. A model that is not cached, or data that is
absent, is skipped.

    OMP_NUM_THREADS=2 python benchmarks/mc_formulations.py --model smollm2-135m-instruct qwen2.5-coder-0.5b-instruct
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]  # the harness, and eval_overhead's helpers beside this file

FORMS = ("letter", "cloze")
POINTS = ("checkpoints", "interpolate", "point_suites", "tradeoff", "noise_from")  # the base cell has no points


def base_cell(matrix: Path, model: str, form: str):
    """The matrix's base cell on `model`, the benchmarks suite alone, each multiple-choice task (one with a
    `formulation`) once, in `form`."""
    from harness.config import ConfigError, validate_matrix
    from harness.matrix import expand

    doc = yaml.safe_load(matrix.read_text("utf-8"))
    bench = doc["eval"]["benchmarks"]
    tasks = list({t["task"]: {**t, "formulation": form} for t in bench["tasks"] if "formulation" in t}.values())
    ev = {k: v for k, v in doc["eval"].items() if k not in POINTS}
    ev.update(suites=["benchmarks"], benchmarks={**bench, "tasks": tasks})
    doc = {k: v for k, v in doc.items() if k != "tuning"}
    spec, _, problems = validate_matrix({**doc, "models": model, "eval": ev}, str(matrix))
    if problems:
        raise ConfigError("\n".join(problems))
    return expand(spec, matrix.parent)[0]


def rows(model: str, form: str, metrics: dict, seconds: float) -> list[str]:
    from harness.suites import describe

    out = []
    for name, m in metrics.items():
        if not name.endswith(("_acc", "_acc_norm")):
            continue
        chance = describe(name).chance  # what guessing scores: 1 / options (harness.suites)
        above = "yes" if m["ci_low"] > chance else "below" if m["ci_high"] < chance else "no"
        value = f"{m['value']:.3f} [{m['ci_low']:.3f}, {m['ci_high']:.3f}]"
        out.append(f"| {model} | {form} | {name} | {m['n']} | {value} | {above} | {seconds:.0f} |")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", nargs="+", required=True, help="zoo names (or folders), one after another")
    ap.add_argument("--forms", nargs="+", choices=FORMS, default=list(FORMS), help="the forms to score (default both)")
    ap.add_argument("--matrix", type=Path, default=REPO / "matrices" / "swap.yaml",
                    help="the matrix whose base cell and benchmark items are measured")
    args = ap.parse_args(argv)
    from eval_overhead import machine, offline_threads, unavailable, versions

    offline_threads()

    import torch

    from harness import models
    from harness.evals.evaluate import run_suites

    lines = ["| model | form | metric | items | value [95% interval] | above chance | suite s |",
             "|---|---|---|---|---|---|---|"]
    for name in args.model:
        cells = {form: base_cell(args.matrix, name, form) for form in args.forms}
        first = next(iter(cells.values()))
        if why := unavailable(first):
            print(f"skipped {name}: {why}")
            continue
        print(f"{name}: loading", flush=True)
        model, tok = models.load(first.model, Path(first.root))
        with torch.no_grad():
            for form, cell in cells.items():
                start = time.perf_counter()
                metrics, _ = run_suites(model, tok, cell, progress=lambda *a, **k: None)
                lines += rows(name, form, metrics, time.perf_counter() - start)
                print(f"{name}: {form} done", flush=True)
        del model
    print(f"Machine: {machine()}; {versions()}; {torch.get_num_threads()} threads; matrix {args.matrix.name}.")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
