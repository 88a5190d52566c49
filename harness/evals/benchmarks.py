"""The `benchmarks` suite: lm-eval's own tasks (MMLU, GSM8K, C-Eval, any task by name) on the in-memory model.

lm-eval's HFLM wraps the model object the cell already holds, so a PEFT or adapter model is
scored as trained (nothing merged, nothing saved and reloaded) and the model loads once per
cell. A task with `data:` runs on local files in their native layout through configs that
include lm-eval's own task YAMLs (harness.evals.lmeval_tasks); without it, lm-eval fetches
the task's dataset from the hub. Prompts, few-shot examples and metrics are lm-eval's.

No answer cache: lm-eval's request cache keys on the request alone, so one model's answers
would be served as another's; the LM is never wrapped in its CachingLM and `cache_requests`
stays False, every number here comes from this model's forward passes.

    scores = run(model, tok, cell)
    scores["mmlu_cloze_acc"]              # per-item 0/1 in a fixed order (subject, then doc id)
    scores["_ids"]["mmlu_cloze_acc"]      # their item ids; scores["_groups"][...] their subjects
    scores["_sanity_batch_invariance"]    # log-likelihoods at batch size 1 vs 8 on a sample
    scores["_timing"]                     # wall seconds: loglikelihood, generate_until, other, sanity

One evaluator call per cell: every entry's tasks are loaded on their own (each with its own
num_fewshot, gen_kwargs and limit, applied as simple_evaluate applies them) and run in one
`lm_eval.evaluator.evaluate`, so requests of all benchmarks are batched together. The
`simple_evaluate` wrapper is not used: after evaluating it collects the git hash and the
environment (`pip list` in a subprocess, torch's collect_env) for results we never store.
Entries whose task names coincide (the same hub task twice, with different few-shot counts)
cannot share one task dict; they go to further calls, one per clash.

`_timing` is per request type, not per task: one call runs all tasks' log-likelihood requests
together (lm-eval batches by request type), so a per-task split of model time does not exist.
"other" is the rest of the calls: building requests (few-shot contexts), filters and metrics;
"sanity" the batch-invariance re-scoring (stock HFLM, outside the calls).

The model is wrapped in harness.evals.fastlm.FastHFLM (shared-context log-likelihoods, equal
to HFLM's own within float rounding); generation is HFLM's.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import math
import re
from pathlib import Path

from harness.evals.items import item_ids, labels
from harness.paths import resolve_data

LOGLIKELIHOOD = ("multiple_choice", "loglikelihood")


def hub_task(task: str, formulation: str | None) -> str:
    """lm-eval's task name for a hub benchmark; its cloze MMLU is `mmlu_continuation`."""
    return "mmlu_continuation" if task == "mmlu" and formulation == "cloze" else task


@functools.cache
def _lm_eval_names() -> tuple[str, ...]:
    from lm_eval.tasks import TaskManager

    return tuple(TaskManager().all_tasks)  # indexes lm-eval's ~14k shipped configs (seconds); reads no data


def unknown_hub_tasks(spec) -> list[tuple[int, str, list[str]]]:
    """(index, name, close matches) for each hub benchmark lm-eval does not know: caught before any training."""
    hub = [(i, hub_task(t.task, t.formulation)) for i, t in enumerate(spec.tasks) if not t.data]
    known = _lm_eval_names() if hub else ()
    return [(i, name, difflib.get_close_matches(name, known, n=3)) for i, name in hub if name not in known]


def prepare(spec, root: Path, drop: dict[str, frozenset[str]] | None = None) -> list[tuple[object, str, Path | None]]:
    """(entry, lm-eval task name, include folder or None for the hub) for each benchmark of the suite."""
    from harness.evals.lmeval_tasks import write_local_task

    out = []
    for entry in spec.tasks:
        if entry.data:
            left_out = (drop or {}).get(entry.task.split("-")[0], frozenset())  # the data report's set names
            folder, name = write_local_task(entry.task, entry.formulation, resolve_data(entry.data, root), entry.name,
                                            left_out)
            out.append((entry, name, folder))
        else:
            out.append((entry, hub_task(entry.task, entry.formulation), None))
    return out


def wrap(model, tok, batch_size: int, add_bos_token: bool | None, fast: bool = True, bf16: bool = False):
    """lm-eval's LM around the in-memory model: FastHFLM (shared contexts), or stock HFLM as the reference.

    `bf16`: HFLM's own bf16 autocast (its `mixed_precision_dtype`; a disabled one inside run_suites' autocast
    would turn it off), with log-softmax in float32 (`softmax_dtype`), as the other suites sum NLLs."""
    if fast:
        from harness.evals.fastlm import FastHFLM as LM
    else:
        from lm_eval.models.huggingface import HFLM as LM
    precision = {"mixed_precision_dtype": "bfloat16", "softmax_dtype": "float32"} if bf16 else {}
    return LM(pretrained=model, tokenizer=tok, batch_size=batch_size, add_bos_token=add_bos_token, **precision)


def load_entry(task_manager, task: str, num_fewshot: int | None, gen_kwargs: dict | None) -> dict:
    """lm-eval's task dict for one entry, its overrides applied to its own tasks as simple_evaluate applies them."""
    from lm_eval.defaults import DEFAULT_OTHER_SEED

    loaded = task_manager.load([task])
    for obj in loaded["tasks"].values():
        if gen_kwargs and obj.get_config("output_type") == "generate_until":
            obj.set_config(key="generation_kwargs", value=dict(gen_kwargs), update=True)
        default = obj.get_config("num_fewshot")
        if num_fewshot is not None and default != 0:  # lm-eval never overrides a config's explicit 0
            obj.set_config(key="num_fewshot", value=num_fewshot)
        elif num_fewshot is None and default is None:
            obj.set_config(key="num_fewshot", value=0)
        obj.set_fewshot_seed(seed=DEFAULT_OTHER_SEED)
    return loaded


def share_calls(loaded: list[dict]) -> list[list[int]]:
    """Entries grouped into evaluator calls: all in one, unless two entries' task or group names coincide."""
    calls: list[list[int]] = []
    taken: list[set[str]] = []
    for i, entry in enumerate(loaded):
        names = set(entry["tasks"]) | set(entry["groups"])
        for call, used in zip(calls, taken, strict=True):
            if not names & used:
                call.append(i)
                used |= names
                break
        else:
            calls.append([i])
            taken.append(names)
    return calls


def evaluate(lm, loaded: list[dict], limits: list[int | None]) -> dict:
    """One lm-eval evaluator call over several entries' task dicts, each entry with its own doc limit.

    Per-task limits go in as lm-eval's `samples` (the first `limit` doc indices of each task):
    the same docs, doc ids and few-shot contexts as `limit` gives, which is one number per call.
    Seeds are set as simple_evaluate sets them.
    """
    import random

    import numpy as np
    from lm_eval.defaults import DEFAULT_OTHER_SEED, DEFAULT_RANDOM_SEED
    from lm_eval.evaluator import evaluate as evaluate_tasks
    from lm_eval.utils import set_torch_seed, setup_logging

    merged: dict = {"tasks": {}, "groups": {}, "group_map": {}}
    samples: dict[str, range] = {}
    for entry, limit in zip(loaded, limits, strict=True):
        for key in merged:
            merged[key].update(entry[key])
        if limit is not None:
            samples.update({name: range(min(limit, len(task.eval_docs))) for name, task in entry["tasks"].items()})
    setup_logging("WARNING")
    random.seed(DEFAULT_RANDOM_SEED)
    np.random.seed(DEFAULT_OTHER_SEED)
    set_torch_seed(DEFAULT_OTHER_SEED)
    with compiled_templates():
        return evaluate_tasks(lm=lm, task_dict=merged, samples=samples or None, cache_requests=False,
                              bootstrap_iters=0, log_samples=True, fewshot_as_multiturn=True)


@contextlib.contextmanager
def compiled_templates():
    """lm-eval renders every doc_to_text/target/choice through `utils.apply_template`, which compiles its Jinja
    template afresh on each call: on the tiny world's 2,152 docs, 12,428 compiles took 8 of the call's 16 s.
    Inside this block each distinct template string compiles once (same environment, same rendering)."""
    from lm_eval import utils

    original = utils.apply_template
    compile_once = functools.lru_cache(maxsize=None)(utils.env.from_string)
    utils.apply_template = lambda template, doc: compile_once(template).render(**doc)
    try:
        yield
    finally:
        utils.apply_template = original


def entry_results(results: dict, loaded: dict) -> dict:
    """The part of one call's results that belongs to one entry's tasks (per_item and the sanity check read it)."""
    leaves = set(loaded["tasks"])
    return {"results": results["results"], "samples": {k: v for k, v in results["samples"].items() if k in leaves},
            "configs": {k: v for k, v in results["configs"].items() if k in leaves}}


def metric_name(prefix: str, metric: str, filter_name: str) -> str:
    """`mmlu_acc`; a filtered metric adds its filter: `gsm8k_exact_match_strict_match`."""
    if filter_name == "none":
        return f"{prefix}_{metric}"
    return "_".join((prefix, metric, re.sub(r"\W", "_", filter_name)))


def per_item(results: dict, prefix: str) -> dict:
    """Per-item scores in a fixed order (task name, then doc id), checked against lm-eval's own aggregate.

    Each list comes with item ids (a hash of the lm-eval task and the doc) under `_ids`; a benchmark
    made of several tasks (MMLU and C-Eval: one per subject) also names each item's task under
    `_groups`, since questions of one subject are not independent draws.
    """
    scores: dict[str, list[float]] = {}
    ids: dict[str, list[str]] = {}
    groups: dict[str, list[str]] = {}
    for leaf in sorted(results["samples"]):
        mine: dict[tuple[str, str], list[float]] = {}
        docs: dict[tuple[str, str], list] = {}
        for s in sorted(results["samples"][leaf], key=lambda s: (s["filter"], s["doc_id"])):
            for m in s["metrics"]:
                if not isinstance(s[m], (int, float)):
                    raise ValueError(f"lm-eval task {leaf}: metric {m!r} has no per-item score "
                                     f"({type(s[m]).__name__}); the benchmarks suite keeps per-item scores, "
                                     "so it runs mean-aggregated metrics only")
                mine.setdefault((m, s["filter"]), []).append(float(s[m]))
                docs.setdefault((m, s["filter"]), []).append((leaf, s["doc"]))
        for (m, f), values in mine.items():
            theirs = results["results"][leaf].get(f"{m},{f}")
            if theirs is None or not math.isclose(sum(values) / len(values), theirs, rel_tol=1e-9, abs_tol=1e-12):
                raise ValueError(f"lm-eval task {leaf}: {m} ({f}) = {theirs} is not the mean of its per-item scores;"
                                 " the benchmarks suite runs mean-aggregated metrics only")
            name = metric_name(prefix, m, f)
            scores.setdefault(name, []).extend(values)
            ids.setdefault(name, []).extend(item_ids(docs[(m, f)]))
            groups.setdefault(name, []).extend([leaf] * len(values))
    several = len(results["samples"]) > 1
    return {**scores, **labels(ids, {k: g if several else None for k, g in groups.items()})}


def batch_invariance(model, tok, results: dict, add_bos_token: bool | None, docs: int, bf16: bool = False) -> dict:
    """Re-score the first `docs` items' requests with stock HFLM at batch sizes 1 and 8.

    bs1 vs bs8: padding must not move a score. bs1 vs run: the suite's own scores (FastHFLM,
    shared contexts, the suite's batch size) must equal stock HFLM's, item by item.
    """
    from lm_eval.api.instance import Instance

    leaf = min(t for t, cfg in results["configs"].items() if cfg.get("output_type") in LOGLIKELIHOOD)
    samples = sorted((s for s in results["samples"][leaf] if s["filter"] == "none"), key=lambda s: s["doc_id"])[:docs]
    requests = [Instance("loglikelihood", s["doc"], tuple(args), i)
                for s in samples for i, args in enumerate(s["arguments"])]
    stock = {bs: wrap(model, tok, bs, add_bos_token, fast=False, bf16=bf16) for bs in (1, 8)}
    lls = {bs: [ll for ll, _ in lm.loglikelihood(requests, disable_tqdm=True)] for bs, lm in stock.items()}
    main = [r[0] for s in samples for r in (resp[0] for resp in s["resps"])]
    picks = {bs: _argmaxes(v, samples) for bs, v in lls.items()}
    return {"task": leaf, "docs": len(samples), "requests": len(requests),
            "max_abs_diff_bs1_bs8": max(abs(a - b) for a, b in zip(lls[1], lls[8], strict=True)),
            "max_abs_diff_bs1_run": max(abs(a - b) for a, b in zip(lls[1], main, strict=True)),
            "same_choices": picks[1] == picks[8] == _argmaxes(main, samples)}


def _argmaxes(values: list[float], samples: list[dict]) -> list[int]:
    out, k = [], 0
    for s in samples:
        n = len(s["arguments"])
        out.append(max(range(n), key=values[k:k + n].__getitem__))
        k += n
    return out


def run(model, tok, cell) -> dict:
    """The suite: every benchmark of `cell.eval.benchmarks` in one evaluator call on one FastHFLM wrapper."""
    import time

    from lm_eval.tasks import TaskManager

    from harness.models import uses_bf16

    spec = cell.eval.benchmarks
    drop = None
    if cell.data.drop_contaminated:  # contaminated items leave scoring, as in the task and safety suites
        from harness.data.prepare import contaminated

        drop = {k: frozenset(c["key"] for c in v["contaminated"]) for k, v in contaminated(cell).items()}
    plan = prepare(spec, Path(cell.root), drop)
    folders = [str(f) for _, _, f in plan if f is not None]
    tm = TaskManager(include_path=folders or None, include_defaults=any(f is None for _, _, f in plan))
    bf16 = uses_bf16(cell.eval.bf16, next(model.parameters()).device)
    lm = wrap(model, tok, spec.batch_size, spec.add_bos_token, bf16=bf16)
    loaded = [load_entry(tm, task, entry.num_fewshot, entry.gen_kwargs) for entry, task, _ in plan]
    limits = [entry.limit or cell.eval.limit for entry, _, _ in plan]
    out: dict = {"_ids": {}, "_groups": {}}
    sanity = {}
    timing = {"evaluate": 0.0, "sanity": 0.0}
    for call in share_calls(loaded):
        start = time.perf_counter()
        results = evaluate(lm, [loaded[i] for i in call], [limits[i] for i in call])
        timing["evaluate"] += time.perf_counter() - start
        for i in call:
            entry = plan[i][0]
            mine = entry_results(results, loaded[i])
            scores = per_item(mine, entry.name)
            for key in ("_ids", "_groups"):
                out[key].update(scores.pop(key))
            out.update(scores)
            if spec.sanity_docs and any(c.get("output_type") in LOGLIKELIHOOD for c in mine["configs"].values()):
                start = time.perf_counter()
                sanity[entry.name] = batch_invariance(model, tok, mine, spec.add_bos_token, spec.sanity_docs, bf16)
                timing["sanity"] += time.perf_counter() - start
    out["_timing"] = {**lm.seconds, "other": max(0.0, timing["evaluate"] - sum(lm.seconds.values())),
                      "sanity": timing["sanity"]}
    if sanity:
        out["_sanity_batch_invariance"] = sanity
    return out
