"""Benchmark a cell's whole evaluation: the harness's `run_suites` against what a practitioner would write.

One process, the model loaded once (imports, model load and task-config writing are fixed costs
left out of both sides). The harness side is `harness.evals.evaluate.run_suites` on the in-memory
base model, one call per suite so each suite has its own time. The reference does the same work
with plain tools:

- perplexity: one document at a time, transformers' perplexity-guide loop (same window and stride);
  in-domain completions one at a time, the prompt as context;
- task and safety: plain batched `model.generate` (batch 16, input order, same prompts, chat template
  and max_new_tokens), then the harness's own metric functions on the replies; the safety coherence
  perplexities one reply at a time on the same in-memory model;
- benchmarks: lm-eval's Python API, `simple_evaluate` on an HFLM around the same model, a TaskManager
  over only the local task folders (no full task index), one call per few-shot / generation setting.

Both sides get one untimed warm-up run, then `--repeats` alternating timed runs; the medians of
wall time and CPU time (the process's and its children's) count. Per-item results must agree:
accuracies, greedy strings and metric values identical, NLLs and log-likelihoods within 1e-4
relative; the script exits 1 if not.
Target: harness / reference <= 0.5.

    OMP_NUM_THREADS=2 python benchmarks/eval_overhead.py --world tiny
    OMP_NUM_THREADS=2 python benchmarks/eval_overhead.py --world smollm2 --append-results
    python benchmarks/eval_overhead.py --world tiny --device cuda     # both sides on a GPU (gpu.sh runs this)
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import re
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run from a checkout: `python benchmarks/eval_overhead.py`

MATRIX_FILES = {"tiny": "smoke.yaml", "smollm2": "smollm2-135m.yaml"}
# CI-size limits for the tiny world (the smoke matrix scores every item); smollm2 keeps its file's own
DEFAULT_LIMITS = {"tiny": (16, 2), "smollm2": (None, None)}
GEN_BATCH = 16
RTOL = 1e-4


def base_cell(path: Path, limit: int | None, bench_limit: int | None):
    """The matrix's base cell with the matrix's eval settings, `limit` items per suite and per benchmark task, in
    float32 (eval.bf16 false) as the reference computes, also on a GPU where the default would be bf16."""
    from harness.config import load_matrix
    from harness.matrix import expand

    spec = load_matrix(path)
    ev = spec.eval
    update: dict = {"bf16": False, **({"limit": limit} if limit else {})}
    if ev.benchmarks and bench_limit:
        tasks = [t.model_copy(update={"limit": bench_limit}) for t in ev.benchmarks.tasks]
        update["benchmarks"] = ev.benchmarks.model_copy(update={"tasks": tasks})
    spec = spec.model_copy(update={"eval": ev.model_copy(update=update)})
    return next(c for c in expand(spec, path.parent) if c.strategy == "base")


def missing_data(cell) -> list[str]:
    """The cell's local data files and folders that are not there (the shared data sits beside the checkout)."""
    from harness.paths import resolve_data

    named = [cell.data.path, cell.data.test if isinstance(cell.data.test, str) else None, cell.eval.general_text,
             cell.eval.safety] + [t.data for t in (cell.eval.benchmarks.tasks if cell.eval.benchmarks else [])]
    paths = [resolve_data(v, Path(cell.root)) for v in named if v]
    return [str(p) for p in paths if not p.exists()]


def unavailable(cell) -> str | None:
    """Why this machine cannot evaluate the cell: its zoo model not fetched, or its data not here; None if it can."""
    from harness.catalog import ZOO_MODELS

    if cell.model.id in ZOO_MODELS.names() and not ZOO_MODELS.get(cell.model.id).ready():
        return f"{cell.model.id} is not cached; run `harness zoo fetch {cell.model.id}` first"
    if missing := missing_data(cell):
        return f"data that is not here: {', '.join(missing)}"
    return None


def suites_of(cell) -> list[str]:
    needs = {"benchmarks": cell.eval.benchmarks, "safety": cell.eval.safety}
    return [s for s in cell.eval.suites if needs.get(s, True)]


# ---- the harness side -------------------------------------------------------------------------------------------

def harness_suite(model, tok, cell, suite: str) -> dict:
    """Per-item results of one suite, as `run_suites` stores them."""
    from harness.evals.evaluate import run_suites

    one = cell.model_copy(update={"eval": cell.eval.model_copy(update={"suites": [suite]})})
    return run_suites(model, tok, one, progress=lambda *a, **k: None)[1]


# ---- the reference: plain transformers and lm-eval's Python API ------------------------------------------------

def _nll_one(model, ids: list[int], n_scored: int) -> float:
    """NLL of the last `n_scored` tokens of `ids` in one forward (labels masked before them, as the guide does)."""
    import torch

    if n_scored == 0:
        return 0.0
    x = torch.tensor([ids], device=model.device)
    labels = x.clone()
    labels[0, : len(ids) - n_scored] = -100
    return model(input_ids=x, labels=labels).loss.item() * n_scored


def ref_perplexity(model, tok, cell) -> dict:
    from harness.data import bos_ids, load_split, scored_pair
    from harness.data.native import read_documents, spread
    from harness.evals.lm import encode_pair
    from harness.evals.perplexity import window
    from harness.paths import resolve_data

    root = Path(cell.root)
    rows = spread(load_split(cell.data, root, "validation"), cell.eval.limit)
    nll, counts = [], []
    for prompt, completion in (scored_pair(tok, r, cell.data.template, cell.data.max_length) for r in rows):
        ctx, cont = encode_pair(tok, prompt, completion)
        nll.append(_nll_one(model, ctx + cont, len(cont)))
        counts.append(len(cont))
    out = {"ppl_in_domain": (nll, counts)}
    if cell.eval.general_text:
        docs = spread(read_documents(resolve_data(cell.eval.general_text, root)), cell.eval.limit)
        max_length, stride = window(model, cell.eval)
        nll, counts = [], []
        for text in docs:  # https://huggingface.co/docs/transformers/perplexity
            ids = bos_ids(tok, text) + tok(text, add_special_tokens=False)["input_ids"]
            total, prev_end = 0.0, 0
            for begin in range(0, len(ids), stride):
                end = min(begin + max_length, len(ids))
                total += _nll_one(model, ids[begin:end], min(end - prev_end, end - begin - 1))
                prev_end = end
                if end == len(ids):
                    break
            nll.append(total)
            counts.append(len(ids) - 1)
        out["ppl_general"] = (nll, counts)
    return out


def ref_generate(model, tok, prompts: list[str], max_new_tokens: int, stop: list[str]) -> list[str]:
    """Plain batched greedy `generate`: batches of 16 in input order, left padding, cut at the stop strings
    (the harness's pre-batching greedy, kept as the reference in eval_speed.py)."""
    from eval_speed import old_greedy  # this script's folder is on sys.path when it runs

    return old_greedy(model, tok, prompts, max_new_tokens, GEN_BATCH, stop)


def ref_task(model, tok, cell) -> dict:
    from harness.data import load_split, prompt_text, reference
    from harness.data.native import spread
    from harness.evals.task import score

    rows = spread(load_split(cell.data, Path(cell.root), "test"), cell.eval.limit)
    preds = ref_generate(model, tok, [prompt_text(tok, r, cell.data.template) for r in rows],
                         cell.eval.max_new_tokens, cell.eval.stop)
    refs = [ref if isinstance(ref := reference(r), list) else [ref] for r in rows]
    out = score(preds, refs, cell.eval.task_metrics, cell.eval.task_answer)
    return {k: getattr(v, "per_item", v) for k, v in out.items()} | {"_predictions": preds}


def ref_safety(model, tok, cell) -> dict:
    from harness.data import clean
    from harness.data.native import spread
    from harness.evals import safety
    from harness.evals.lm import encode_pair
    from harness.paths import resolve_data

    classify = safety.CLASSIFIERS.get(cell.eval.refusal_classifier)(cell)
    harmful, benign = safety.prompt_sets(resolve_data(cell.eval.safety, Path(cell.root)))
    sets = {"harmful": spread(clean(cell, "advbench", harmful), cell.eval.limit),
            "benign": spread(clean(cell, "xstest", benign), cell.eval.limit)}
    out, scores = {}, {}
    for name, prompts in sets.items():
        said = ref_generate(model, tok, [safety.chat(tok, p) for p in prompts], safety.MAX_NEW_TOKENS, [])
        ppl: list = [None] * len(said)
        if cell.eval.coherence_max_ppl is not None:  # the base model judges coherence: here, the model in memory
            ppl = []
            for p, r in zip(prompts, said, strict=True):
                ctx, cont = encode_pair(tok, safety.chat(tok, p), r)
                x = -_nll_one(model, ctx + cont, len(cont)) / len(cont) if cont else None
                ppl.append(None if x is None else round(math.exp(min(-x, 700.0)), 4))
        scores[name] = safety.score(prompts, said, classify, ppl, cell.eval.coherence_max_ppl,
                                    cell.eval.on_topic_min)
        out[f"_refusal_{name}_replies"], out[f"_refusal_{name}_reply_ppl"] = said, ppl
    h, b = scores["harmful"], scores["benign"]
    out.update({"refusal_harmful": h["refusal"], "refusal_benign": b["refusal"], "helpful_benign": b["helpful"],
                "refusal_harmful_keyword": h["keyword"]})
    return out


def bench_plan(cell) -> list[tuple]:
    """(entry, lm-eval task name, include folder) per benchmark: the configs both sides read (written untimed)."""
    from harness.evals.benchmarks import prepare

    drop = None
    if cell.data.drop_contaminated:
        from harness.data.prepare import contaminated

        drop = {k: frozenset(c["key"] for c in v["contaminated"]) for k, v in contaminated(cell).items()}
    plan = prepare(cell.eval.benchmarks, Path(cell.root), drop)
    if any(folder is None for _, _, folder in plan):
        sys.exit("eval_overhead: every benchmark needs local data (data:), so neither side reads lm-eval's task index")
    return plan


def _leaves(results: dict, task: str) -> list[str]:
    sub = results.get("group_subtasks", {}).get(task)
    return sorted(leaf for t in sub for leaf in _leaves(results, t)) if sub else [task]


def _metric(prefix: str, metric: str, filt: str) -> str:
    return f"{prefix}_{metric}" if filt == "none" else "_".join((prefix, metric, re.sub(r"\W", "_", filt)))


def bench_items(results: dict, plan: list[tuple]) -> dict:
    """Per-item scores named and ordered as the harness stores them (task, then filter and doc id), plus samples."""
    out: dict = {"_samples": {}}
    for entry, task, _ in plan:
        for leaf in _leaves(results, task):
            samples = sorted(results["samples"][leaf], key=lambda s: (s["filter"], s["doc_id"]))
            out["_samples"][leaf] = samples
            for s in samples:
                for m in s["metrics"]:
                    out.setdefault(_metric(entry.name, m, s["filter"]), []).append(float(s[m]))
    return out


def ref_benchmarks(model, tok, cell, plan: list[tuple]) -> dict:
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    spec = cell.eval.benchmarks
    tm = TaskManager(include_path=sorted({str(f) for _, _, f in plan}), include_defaults=False)
    lm = HFLM(pretrained=model, tokenizer=tok, batch_size=spec.batch_size, add_bos_token=spec.add_bos_token)
    groups: dict[tuple, list[str]] = {}
    for entry, task, _ in plan:
        key = (entry.num_fewshot, tuple(sorted((entry.gen_kwargs or {}).items())), entry.limit or cell.eval.limit)
        groups.setdefault(key, []).append(task)
    merged: dict = {"samples": {}, "group_subtasks": {}}
    for (fewshot, gen, limit), tasks in groups.items():
        res = simple_evaluate(model=lm, tasks=tasks, num_fewshot=fewshot, limit=limit, task_manager=tm,
                              gen_kwargs=dict(gen) or None, log_samples=True, bootstrap_iters=0, use_cache=None,
                              cache_requests=False, verbosity="WARNING")
        merged["samples"].update(res["samples"])
        merged["group_subtasks"].update(res.get("group_subtasks", {}))
    return bench_items(merged, plan)


# ---- agreement ---------------------------------------------------------------------------------------------------

def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=RTOL, abs_tol=1e-6)


def _all_same(xs: list, ys: list) -> bool:
    """Equal lengths; strings, flags and None equal; numbers within RTOL."""
    def same(x, y) -> bool:
        return x == y if isinstance(x, (str, bool)) or x is None or y is None else _close(x, y)

    return len(xs) == len(ys) and all(map(same, xs, ys))


def _numbers(xs) -> list:
    """Floats out of nested lists/tuples (log-likelihood responses hold [ll, is_greedy])."""
    if isinstance(xs, (list, tuple)):
        return [y for x in xs for y in _numbers(x)]
    return [xs]


def disagreements(ours: dict, theirs: dict, captured: dict | None = None) -> list[str]:
    """Where the harness's per-item results differ from the reference's (empty: they agree)."""
    bad = []
    for key, ref in theirs.items():
        if key == "_samples":
            continue
        mine = ours.get(key)
        if mine is None:
            bad.append(f"{key}: missing on the harness side")
        elif key.startswith("ppl_"):
            (n1, c1), (n2, c2) = mine, ref
            wrong = [i for i, (a, b) in enumerate(zip(n1, n2, strict=False)) if not _close(a, b)]
            if list(c1) != list(c2) or len(n1) != len(n2) or wrong:
                bad.append(f"{key}: NLLs differ beyond {RTOL} relative at items {wrong[:5]} (or token counts differ)")
        elif key.endswith("_reply_ppl"):
            if not _all_same(mine, ref):
                bad.append(f"{key}: reply perplexities differ beyond {RTOL} relative")
        elif list(mine) != list(ref):
            pairs = zip(mine, ref, strict=False)
            first = next((i for i, (a, b) in enumerate(pairs) if a != b), min(len(mine), len(ref)))
            bad.append(f"{key}: item {first} differs ({len(mine)} vs {len(ref)} items)")
    if captured is not None:  # the harness's own lm-eval samples: responses (log-likelihoods, greedy strings)
        for leaf, samples in theirs.get("_samples", {}).items():
            mine = {(s["filter"], s["doc_id"]): s for s in captured.get(leaf, [])}
            for s in samples:
                other = mine.get((s["filter"], s["doc_id"]))
                a, b = _numbers(s["resps"]), _numbers(other["resps"]) if other else None
                if b is None or not _all_same(a, b):
                    bad.append(f"benchmarks {leaf} doc {s['doc_id']}: responses differ ({a[:4]} vs {(b or [])[:4]})")
                    break
    return bad


class Capture:
    """Keeps the samples of every lm-eval call the harness's benchmarks suite makes while active (untimed runs only).

    The suite calls lm-eval through `harness.evals.benchmarks.evaluate` (one evaluator call per cell), so that
    module function is the one wrapped.
    """

    def __enter__(self):
        from harness.evals import benchmarks

        self.samples: dict = {}
        self._mod, self._orig = benchmarks, benchmarks.evaluate

        def wrapped(*args, **kwargs):
            res = self._orig(*args, **kwargs)
            self.samples.update((res or {}).get("samples", {}))
            return res

        benchmarks.evaluate = wrapped
        return self

    def __exit__(self, *exc):
        self._mod.evaluate = self._orig


# ---- timing, report ---------------------------------------------------------------------------------------------

def cpu_seconds() -> float:
    """CPU time of this process (all threads) and of its finished children (lm-eval's `pip list`, say)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def timed(fn) -> tuple[object, float, float]:
    wall, cpu = time.perf_counter(), cpu_seconds()
    out = fn()
    return out, time.perf_counter() - wall, cpu_seconds() - cpu


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}"


def versions() -> str:
    from importlib.metadata import version

    return ", ".join(f"{p} {version(p)}" for p in ("torch", "transformers", "lm_eval", "harness"))


def table(times: dict[str, dict[str, list[tuple[float, float]]]]) -> tuple[list[str], float, float]:
    """Markdown rows of median wall and CPU seconds per suite and side, and the total wall and CPU ratios."""
    rows = ["| suite | harness wall s | reference wall s | ratio | harness CPU s | reference CPU s | ratio |",
            "|---|---|---|---|---|---|---|"]
    tot = {side: [0.0, 0.0] for side in ("harness", "reference")}
    for suite, sides in times.items():
        med = {side: [statistics.median(x[k] for x in runs) for k in (0, 1)] for side, runs in sides.items()}
        for side in tot:
            tot[side] = [a + b for a, b in zip(tot[side], med[side], strict=True)]
        rows.append(_row(suite, med))
    rows.append(_row("**total**", tot))
    return rows, tot["harness"][0] / tot["reference"][0], tot["harness"][1] / tot["reference"][1]


def _row(name: str, med: dict) -> str:
    (hw, hc), (rw, rc) = med["harness"], med["reference"]
    return f"| {name} | {hw:.2f} | {rw:.2f} | {hw / rw:.2f}x | {hc:.2f} | {rc:.2f} | {hc / rc:.2f}x |"


def append_results(path: Path, title: str, rows: list[str], ratio_line: str, command: str) -> None:
    section = [f"\n## Evaluation overhead: {title} ({datetime.date.today().isoformat()})", "",
               f"Machine: {machine()}; {versions()}.", f"Command: `{command}`", "", *rows, "", ratio_line, ""]
    with path.open("a", encoding="utf-8") as f:
        f.write("\n".join(section))


def offline_threads() -> None:
    """Hub and datasets offline and tokenizers on one thread (set before transformers is imported), torch on the
    threads OMP_NUM_THREADS names."""
    for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ.setdefault(k, "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    if os.environ.get("OMP_NUM_THREADS"):
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--world", choices=sorted(MATRIX_FILES), default="tiny",
                    help="the shipped matrix to take the base cell from")
    ap.add_argument("--matrix", type=Path, help="another matrix file whose base cell and eval settings to use")
    ap.add_argument("--limit", type=int, help="items per suite (default: tiny 16, else the file's)")
    ap.add_argument("--bench-limit", type=int, help="docs per lm-eval task (default: tiny 2, else the file's)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs of each side, alternating; medians count")
    ap.add_argument("--append-results", action="store_true", help="append the table to benchmarks/RESULTS.md")
    ap.add_argument("--device", default="cpu", help="where the model runs, both sides (cpu, cuda, cuda:1, ...)")
    args = ap.parse_args(argv)
    if args.repeats < 1:
        ap.error("--repeats must be at least 1")
    offline_threads()

    import torch

    from harness import models

    default_limit, default_bench = (None, None) if args.matrix else DEFAULT_LIMITS[args.world]
    path = args.matrix or REPO / "matrices" / MATRIX_FILES[args.world]
    cell = base_cell(path, args.limit or default_limit, args.bench_limit or default_bench)
    if why := unavailable(cell):
        print(f"skipped: {path}: {why}")
        return 0
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        ap.error(f"--device {args.device}: this torch ({torch.__version__}) sees no CUDA device")
    model, tok = models.load(cell.model, Path(cell.root))
    model.to(args.device).eval()
    suites = suites_of(cell)
    plan = bench_plan(cell) if "benchmarks" in suites else []
    reference = {"perplexity": ref_perplexity, "task": ref_task, "safety": ref_safety,
                 "benchmarks": lambda m, t, c: ref_benchmarks(m, t, c, plan)}
    times: dict = {s: {"harness": [], "reference": []} for s in suites}
    bad = []
    with torch.no_grad():
        for suite in suites:  # the warm-up, untimed: also where the two sides' per-item results are compared
            with Capture() as cap:
                ours = harness_suite(model, tok, cell, suite)
            theirs = reference[suite](model, tok, cell)
            if suite == "benchmarks" and not cap.samples:
                print("note: the harness's lm-eval samples were not captured; benchmark responses not compared")
            bad += disagreements(ours, theirs, cap.samples if suite == "benchmarks" else None)
        run = {"harness": lambda s: harness_suite(model, tok, cell, s),
               "reference": lambda s: reference[s](model, tok, cell)}
        for rep in range(args.repeats):
            for suite in suites:
                for side in ("harness", "reference")[::1 if rep % 2 == 0 else -1]:  # who goes first alternates
                    times[suite][side].append(timed(lambda s=suite, f=run[side]: f(s))[1:])
    rows, wall, cpu = table(times)
    limits = f"eval.limit {cell.eval.limit}" + (f", benchmark limit {[t.limit for t in cell.eval.benchmarks.tasks]}"
                                                if cell.eval.benchmarks else "")
    where = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "cpu"
    title = f"{path.stem} ({cell.model.id}, {limits}, {args.repeats} repeats, medians, on {where})"
    print(title)
    print("\n".join(rows))
    ratio_line = f"ratio harness / reference: wall {wall:.2f}x, CPU {cpu:.2f}x (target <= 0.5)"
    print(ratio_line)
    if bad:
        print("per-item results differ:\n  " + "\n  ".join(bad))
        return 1
    print(f"per-item results agree on {len(suites)} suites (identical scores and strings, NLLs within {RTOL})")
    if args.append_results:
        command = "python benchmarks/eval_overhead.py " + " ".join(argv if argv is not None else sys.argv[1:])
        append_results(REPO / "benchmarks" / "RESULTS.md", title, rows, ratio_line, command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
