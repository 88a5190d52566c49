"""The regression gate, calibrated on the tiny world: how often it fails a swap where nothing changed, and how often
it catches a regression of the size `harness run --dry-run` says it can detect.

One matrix (the smoke's data, training and rates for four strategies whose training noise differs ~50x, at a
smaller token budget; suites perplexity and task) is trained on many seeds, once. Then, from one run:

- **prior**: seeds 1000-1005 of each strategy build the noise prior (`harness noise`), kept apart from the rest;
- **null swaps**: every strategy's other seeds are cut into disjoint sets of four; each set is one swap, seeds
  {a, b} as the baseline and {c, d} as the candidate, compared by `harness compare` (the real function, on
  results folders of those cells). A swap fails when the gate exits 1. The false-alarm rate over the whole gated
  family (task_exact_match and ppl_general: Holm over 2) gets a Clopper-Pearson interval; each metric's null
  p-values are checked against uniform (Kolmogorov-Smirnov);
- **planted regressions**: the first `--planted` swaps again, with the candidate's per-item scores of one
  headline metric made worse by the detectable difference the power formula (harness.report.noise.
  detectable_difference) predicts for this design, fixed before any swap is compared: ppl_general's per-document
  NLL raised by log(1 + MDD/ppl) per token; task_exact_match's right items flipped to wrong at random, each with
  probability MDD / (its share right), in each candidate seed (the random flips the formula's variance counts).
  Detected when the gate fails that metric of that configuration;

each beside two other rules on the same folders: the gate without a prior (each side's own two seeds), and the
rule before training noise was measured (regression = the item bootstrap's interval of the seed-averaged items
excludes 0 on the worse side, no correction).

    PYTHONPATH=$PWD python benchmarks/gate_calibration.py [--out /tmp/gate-calibration] [--swaps 100] [--planted 60]

The matrix run resumes (re-run the command after an interruption); the comparisons take a few minutes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
STRATEGIES = [("full", {}, 9e-4), ("lora", {"r": 16}, 6e-3), ("qlora", {"r": 16}, 6e-3),
              ("adapter", {"size": 16}, 9e-3)]  # results/smoke's chosen rates (its seed-0 search)
FAMILY = ("task_exact_match", "ppl_general")
PRIOR_SEEDS = list(range(1000, 1006))
SEEDS_PER_SIDE = 2


def matrix_text(tokens: int, swap_seeds: list[int]) -> str:
    strategies = "\n".join(f"  - {{name: {n}, params: {json.dumps(p)}, train: {{learning_rate: {lr}}}}}"
                           for n, p, lr in STRATEGIES)
    return f"""name: gate-calibration
models: tiny-world
data: {{path: zoo:tiny-world/record, group: person, max_length: 256}}
budget: {{tokens: {tokens}}}
train: {{batch_size: 8, warmup_steps: 10}}
strategies:
{strategies}
seeds: {json.dumps(PRIOR_SEEDS + swap_seeds)}
tuning: {{lr_multipliers: [1.0]}}
eval:
  suites: [perplexity, task]
  general_text: zoo:tiny-world/general/test.jsonl
  max_new_tokens: 48
  inference: false
"""


def subset(runs: Path, results: list[dict], dest: Path) -> Path:
    """A results folder holding just these cells (hard links to the run's files)."""
    shutil.rmtree(dest, ignore_errors=True)
    (dest / "cells").mkdir(parents=True)
    (dest / "items").mkdir()
    for r in results:
        for sub in ("cells", "items"):
            os.link(runs / sub / f"{r['id']}.json", dest / sub / f"{r['id']}.json")
    return dest


def plant(folder: Path, metric: str, effect: float, rng: random.Random) -> None:
    """Make every candidate cell in `folder` worse on `metric` by `effect` (ppl_general: a log ratio per token;
    task_exact_match: that share of the items flipped from right to wrong), rewriting its checksums."""
    from harness import store

    for cell_id in store.stored_ids(folder):
        result, items = store.load(folder, cell_id), store.load_items(folder, cell_id)
        (folder / "items" / f"{cell_id}.json").unlink()  # a hard link: never write through to the run's file
        (folder / "cells" / f"{cell_id}.json").unlink()
        m = dict(result["metrics"][metric])
        if metric.startswith("ppl"):
            nll, counts = items[metric]
            items[metric] = [[x + effect * c for x, c in zip(nll, counts, strict=True)], counts]
            for k in ("value", "ci_low", "ci_high"):
                if k in m:
                    m[k] *= math.exp(effect)
        else:
            scores = list(items[metric])  # each right item flips with effect / share right: effect on average
            share = sum(scores) / len(scores)
            scores = [0.0 if x == 1.0 and rng.random() < effect / share else x for x in scores]
            items[metric] = scores
            shift = sum(scores) / len(scores) - m["value"]
            m.update({k: m[k] + shift for k in ("value", "ci_low", "ci_high") if k in m})
        result["metrics"] = {**result["metrics"], metric: m}
        store.save(folder, result, items)


def item_rule(a_dir: Path, b_dir: Path) -> dict[str, bool]:
    """The rule before training noise was measured: per family metric, the paired bootstrap on seed-averaged items
    excludes 0 on the worse side."""
    from harness import store
    from harness.report import deltas
    from harness.suites import describe

    out = {}
    sides = []
    for d in (a_dir, b_dir):
        results = store.load_all(d)
        sides.append((results, [store.load_items(d, r["id"]) for r in results]))
    for name in FAMILY:
        (ra, ia), (rb, ib) = sides
        va = {"value": sum(r["metrics"][name]["value"] for r in ra) / len(ra), "lo": 0, "hi": 0}
        vb = {"value": sum(r["metrics"][name]["value"] for r in rb) / len(rb), "lo": 0, "hi": 0}
        d = deltas.difference(va, vb, deltas.seed_scores(ia, name), deltas.seed_scores(ib, name))
        worse = d["hi"] < 0 if describe(name).higher_is_better else d["lo"] > 0
        out[name] = worse
    return out


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    from scipy.stats import beta

    a = (1 - level) / 2
    return (0.0 if k == 0 else float(beta.ppf(a, k, n - k + 1)),
            1.0 if k == n else float(beta.ppf(1 - a, k + 1, n - k)))


def rate(k: int, n: int) -> str:
    lo, hi = clopper_pearson(k, n)
    return f"{k}/{n} = {k / n:.1%} [{lo:.1%}, {hi:.1%}]"


def detectable(prior_items: dict, metric: str, prior) -> tuple[float, float, str]:
    """(the planted effect on the scale `plant` takes, the same in the metric's units, how) for one configuration:
    noise.detectable_difference with the item sd of a prior cell's per-item scores (per group for the task, as the
    gate resamples), the prior's seed variance and df, two seeds a side."""
    from harness.power import item_sd, per_unit
    from harness.report.noise import detectable_difference

    unit = "groups" if metric == "task_exact_match" else "items"
    sd, value, _ = item_sd(prior_items, metric, unit)
    groups = (prior_items.get("_groups") or {}).get(metric)
    n = len(set(groups)) if unit == "groups" and groups else len(prior_items[metric][0] if metric.startswith("ppl")
                                                                  else prior_items[metric])
    var, df = (prior.var, prior.df) if prior else (None, None)
    if metric.startswith("ppl"):  # on the log scale: sd of log ppl per document, the prior's log variance
        mdd = detectable_difference(sd / value, n, var, SEEDS_PER_SIDE, df)
        return mdd, value * math.expm1(mdd), f"{n} documents"
    mdd = detectable_difference(sd, n, var, SEEDS_PER_SIDE, df, per_unit=per_unit(prior_items, metric, unit))
    return mdd, mdd, f"{n} {unit}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("/tmp/gate-calibration"))
    ap.add_argument("--swaps", type=int, default=100)
    ap.add_argument("--planted", type=int, default=60)
    ap.add_argument("--tokens", type=int, default=20000)
    args = ap.parse_args()
    sys.path.insert(0, str(REPO))
    from harness import store
    from harness.report import prior as priors_mod
    from harness.report.compare import compare
    from harness.report.prior import config_label

    started = time.time()
    per = math.ceil(args.swaps / len(STRATEGIES))
    swap_seeds = list(range(2 * SEEDS_PER_SIDE * per))
    args.out.mkdir(parents=True, exist_ok=True)
    matrix = args.out / "gate-calibration.yaml"
    matrix.write_text(matrix_text(args.tokens, swap_seeds), encoding="utf-8")
    runs = args.out / "runs"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    print(f"training {len(STRATEGIES)} strategies x {len(PRIOR_SEEDS) + len(swap_seeds)} seeds at "
          f"{args.tokens:,} tokens -> {runs} (log: {args.out / 'run.log'})", flush=True)
    with open(args.out / "run.log", "a", encoding="utf-8") as log:
        code = subprocess.call([sys.executable, "-m", "harness.cli", "run", "--matrix", str(matrix), "--out",
                                str(runs)], stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    trained_at = time.time()
    results = [r for r in store.load_all(runs) if r["cell"]["strategy"] != "base"]
    bad = [r["label"] for r in results if r["status"] != "ok"]
    if code not in (0, 1) or bad:
        print(f"the matrix run did not finish cleanly (exit {code}; not ok: {bad[:5]}); see {args.out / 'run.log'}")
        return 2
    by = {}
    for r in results:
        by.setdefault(config_label(r), {})[r["cell"]["seed"]] = r
    prior_dir = subset(runs, [by[k][s] for k in by for s in PRIOR_SEEDS], args.out / "prior")
    priors_mod.write_noise(prior_dir)
    priors = priors_mod.load_priors(prior_dir)

    swaps = []  # (configuration, baseline seeds, candidate seeds)
    for k in by:
        for j in range(per):
            s = swap_seeds[4 * j: 4 * j + 4]
            swaps.append((k, s[:2], s[2:]))
    swaps.sort(key=lambda t: (t[1][0], t[0]))  # interleave the configurations: the first N swaps cover all four
    swaps = swaps[:args.swaps]
    work = args.out / "swaps"
    rules = {"gate (seed-aware, prior)": [], "gate (own seeds, no prior)": [], "before: item bootstrap only": []}
    null_p = {m: [] for m in FAMILY}
    for i, (k, sa, sb) in enumerate(swaps):
        a = subset(runs, [by[k][s] for s in sa], work / "a")
        b = subset(runs, [by[k][s] for s in sb], work / "b")
        report = compare(a, b, noise=prior_dir)
        rules["gate (seed-aware, prior)"].append(report.exit_code == 1)
        for t in report.tests:
            null_p[t["metric"]].append(t["p"])
        rules["gate (own seeds, no prior)"].append(compare(a, b).exit_code == 1)
        rules["before: item bootstrap only"].append(any(item_rule(a, b).values()))
        if (i + 1) % 20 == 0:
            print(f"  null swaps: {i + 1}/{len(swaps)}", flush=True)

    effects = {}
    for k in by:
        items = store.load_items(prior_dir, by[k][PRIOR_SEEDS[0]]["id"])
        for m in FAMILY:
            effects[k, m] = detectable(items, m, priors.get(k, m))
    rng = random.Random(0)
    caught = {m: {r: [] for r in rules} for m in FAMILY}
    for i, (k, sa, sb) in enumerate(swaps[:args.planted]):
        a = subset(runs, [by[k][s] for s in sa], work / "a")
        for m in FAMILY:
            b = subset(runs, [by[k][s] for s in sb], work / "b")
            plant(b, m, effects[k, m][0], rng)
            report = compare(a, b, noise=prior_dir)
            caught[m]["gate (seed-aware, prior)"].append(
                any(t["metric"] == m and t["verdict"] == "regressed" for t in report.tests))
            plain = compare(a, b)
            caught[m]["gate (own seeds, no prior)"].append(
                any(t["metric"] == m and t["verdict"] == "regressed" for t in plain.tests))
            caught[m]["before: item bootstrap only"].append(item_rule(a, b)[m])
        if (i + 1) % 20 == 0:
            print(f"  planted: {i + 1}/{args.planted}", flush=True)
    shutil.rmtree(work, ignore_errors=True)

    from scipy.stats import kstest

    lines = [f"gate calibration: tiny world, {len(by)} configurations ({', '.join(by)}), {args.tokens:,} training "
             f"tokens a run, {SEEDS_PER_SIDE} seeds a side, family {' + '.join(FAMILY)} (Holm over 2); prior from "
             f"seeds {PRIOR_SEEDS[0]}-{PRIOR_SEEDS[-1]} ({priors.text}), swaps on seeds 0-{swap_seeds[-1]}", "",
             "null swaps (nothing changed but the training seeds), false alarms over the family, 95% "
             "Clopper-Pearson; target <= 5%:"]
    lines += [f"  {name:<30} {rate(sum(v), len(v))}" for name, v in rules.items()]
    lines += ["", "null p-values of the seed-aware gate against uniform (Kolmogorov-Smirnov):"]
    for m, ps in null_p.items():
        ks = kstest(ps, "uniform")
        lines.append(f"  {m:<18} {len(ps)} p-values, share < 0.05: {sum(p < 0.05 for p in ps) / len(ps):.1%}, "
                     f"< 0.5: {sum(p < 0.5 for p in ps) / len(ps):.0%}; KS D = {ks.statistic:.3f} (p {ks.pvalue:.2g})")
    lines += ["", f"planted regressions at the predicted detectable difference (80% power, 5% two-sided, "
                  f"{SEEDS_PER_SIDE} seeds a side), {args.planted} repeats per metric; target >= 80% detected:"]
    for k in by:
        lines.append(f"  {k}: " + "; ".join(
            f"{m} {('+' if m.startswith('ppl') else '-')}{effects[k, m][1]:.3g} ({effects[k, m][2]})" for m in FAMILY))
    for m in FAMILY:
        lines.append(f"  {m}:")
        lines += [f"    {name:<30} {rate(sum(v), len(v))}" for name, v in caught[m].items()]
    done = time.time()
    lines += ["", f"wall time: {done - started:.0f} s ({trained_at - started:.0f} s training and evaluating "
                  f"{len(results)} runs, {done - trained_at:.0f} s comparing)"]
    text = "\n".join(lines)
    print(text)
    (args.out / "calibration.txt").write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
