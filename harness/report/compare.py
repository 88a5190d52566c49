"""The regression gate: a candidate results folder against a baseline, configuration by configuration.

Cells pair by CONFIGURATION: strategy, parameters and training config, not the seed, ignoring the model id
(the point is swapping the base model); each side contributes every seed it ran. Each metric's difference
(candidate minus baseline: the difference of the two means over seeds; perplexity: the log ratio of geometric
means, shown in perplexity units as G_a·(e^x − 1) of the baseline's geometric mean G_a) gets a 95% interval
Δ ± t·SE (prior.seed_aware) whose SE adds
- the item term: a paired bootstrap over the items both sides scored, of seed-averaged per-item scores
  (deltas.difference: joined on item ids; corpus metrics re-scored as corpora), else the two intervals
  combined (said in the table); df = paired items (or groups) − 1;
- each trained side's seed term: noise.seed_term of its per-seed values, moderated with the noise prior of
  its configuration and metric (`--noise`, a noise.json from `harness noise`); base cells have none.
With one seed per side and no prior the interval is the item bootstrap's alone, and the row and the verdict
say training noise is not measured: such an interval covers new items, not a new training run.

Per-token perplexity is not comparable across tokenizers (cells record theirs: `tokenizer: {vocab_size,
sha256}`). Where the two sides of a configuration used different tokenizers, its ppl_* rows are marked not
comparable and not gated, and the family's perplexity metrics are replaced by their bits-per-byte twins
(`ppl_general` -> `ppl_general_bpb`: NLL per UTF-8 byte of the same documents, tokenizer-independent).

The gate is calibrated over a pre-declared family of headline metrics (`--metrics`, else each suite's primary
metric: family()). A family metric regressed when it is worse than the tolerance (in the metric's own units;
with `relative`, a fraction of the baseline value), its interval excludes zero and its Holm-adjusted p (Holm
over every configuration x family metric compared) is below ALPHA; a difference within float noise (REL_NOISE,
ABS_NOISE) never is. Other metrics are reported with their intervals and marked not gated. Items that only one
side scored are counted in a warning; no shared item at all stops the gate (exit 2): the two folders did not
measure the same thing. The gate fails closed: a configuration that finished on the baseline and is missing,
not ok or short of seeds on the candidate, a baseline metric the candidate lacks, and a candidate metric that
is null, NaN or has a non-finite interval are regressions (exit 1); a baseline that cannot serve as the
reference (an ok cell without metrics, a null or NaN value) and a non-finite tolerance are input errors
(ResultsError, exit 2). The report's last line says which verdict, the correction, the family and the seeds.

    report = compare(Path("results/qwen2.5"), Path("results/qwen3"), tolerance=0.01, noise=Path("results/x"))
    print(report.markdown()); sys.exit(report.exit_code)    # 1 when anything regressed
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from harness import store
from harness.evals.items import PairingError
from harness.matrix import BASE
from harness.report import deltas, prior, rates
from harness.report.frame import ResultsError, caveats, current_set, load_items, load_results
from harness.report.noise import holm
from harness.suites import describe, is_per_token, suite_of

ORDER = ("regressed", "improved", "worse, within tolerance", "worse, not gated", "indistinguishable", "not comparable")
OPTIONAL = ("worse, not gated", "not comparable")  # verdicts the summary line names only where they occur
ALPHA = 0.05


def pair_key(result: dict) -> str:
    """What a cell is a seed of: strategy, parameters and training config (never the seed, never the model)."""
    cell = result["cell"]
    return json.dumps({k: cell.get(k) for k in ("strategy", "params", "train")}, sort_keys=True)


def _by_key(results: list[dict], where: Path) -> dict[str, list[dict]]:
    """Per configuration, its cells (one per seed), by seed."""
    out: dict[str, list[dict]] = {}
    for r in results:
        group = out.setdefault(pair_key(r), [])
        if twin := next((o for o in group if o["cell"].get("seed") == r["cell"].get("seed")), None):
            raise ResultsError(f"{where}: cells {twin['id']} and {r['id']} have the same strategy, parameters, "
                               "training config and seed (two models in one folder?); compare needs one per folder")
        group.append(r)
    return {k: sorted(g, key=lambda r: r["cell"].get("seed") or 0) for k, g in out.items()}


def family(results: list[dict]) -> list[str]:
    """The default headline metrics: each suite's primary metric among those measured. task: task_exact_match,
    else the first task metric; perplexity: ppl_general (else the first); safety: refusal_harmful (else the
    first); benchmarks: the first metric of each benchmark task."""
    names = list(dict.fromkeys(n for r in results for n in (r.get("metrics") or {})))
    by_suite: dict[str, list[str]] = {}
    for n in names:
        by_suite.setdefault(suite_of(n), []).append(n)
    out = []
    for suite, preferred in (("task", "task_exact_match"), ("perplexity", "ppl_general"),
                             ("safety", "refusal_harmful")):
        have = by_suite.get(suite) or []
        if have:
            out.append(preferred if preferred in have else have[0])
    bench = by_suite.get("benchmarks") or []
    tasks = list(dict.fromkeys(t.get("name") or t.get("task") for r in results
                               for t in (((r["cell"].get("eval") or {}).get("benchmarks") or {}).get("tasks") or [])
                               if isinstance(t, dict)))
    for task in sorted(tasks, key=len, reverse=True):  # longest prefix first: mmlu_cloze before mmlu
        if first := next((n for n in bench if n.startswith(f"{task}_") and n not in out), None):
            out.append(first)
            bench = [n for n in bench if not n.startswith(f"{task}_")]
    if bench and not tasks:  # results without their task list: the first benchmark metric
        out.append(bench[0])
    return out


def tokenizers(a: list[dict], b: list[dict]) -> tuple[dict, dict] | None:
    """The two sides' recorded tokenizers where they differ; None when they are the same or not recorded."""
    ta, tb = (next((r["tokenizer"] for r in side if isinstance(r.get("tokenizer"), dict)), None) for side in (a, b))
    if ta and tb and ta.get("sha256") != tb.get("sha256"):
        return ta, tb
    return None


def _tokenizer_text(results: list[dict], tok: dict) -> str:
    model = (results[0]["cell"].get("model") or {}).get("id", "?")
    return f"`{model}` ({tok.get('vocab_size', '?'):,} tokens, sha256 {str(tok.get('sha256'))[:12]})"


def _metric(ms: list[dict]) -> dict:
    """A side's stored metric over its seeds: mean value and mean interval bounds (for an unpaired difference)."""
    return {"value": float(sum(m["value"] for m in ms) / len(ms)),
            "lo": float(sum(m.get("ci_low", m["value"]) for m in ms) / len(ms)),
            "hi": float(sum(m.get("ci_high", m["value"]) for m in ms) / len(ms)), "n": ms[0].get("n")}


def _seeds(groups: list[list[dict]]) -> str:
    """The seeds of the trained cells compared, e.g. `0,1`."""
    seeds = sorted({r["cell"].get("seed") for g in groups for r in g if r["cell"]["strategy"] != BASE},
                   key=lambda s: (s is None, s))
    return ",".join(str(s) for s in seeds) or "none (base only)"


@dataclass
class Report:
    baseline: Path
    candidate: Path
    rows: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    pairs: dict[str, tuple[str, str]] = field(default_factory=dict)  # cell label -> (baseline id, candidate id)
    family: list[str] = field(default_factory=list)  # the headline metrics gated
    family_size: int = 0  # gated comparisons with a p-value: configurations x family metrics
    seeds: tuple[str, str] = ("", "")  # trained seeds on each side, e.g. ("0,1", "2,3")
    noise: str = ""  # what the intervals' training-noise term is
    tests: list[dict] = field(default_factory=list)  # each gated comparison: cell, metric, delta, p, q (Holm), verdict

    @property
    def exit_code(self) -> int:
        return 1 if any(r["verdict"] == "regressed" for r in self.rows) else 0

    def verdict(self) -> str:
        n = sum(r["verdict"] == "regressed" for r in self.rows)
        head = f"**gate: FAIL (exit 1): {n} regression(s)**" if self.exit_code else "**gate: pass (exit 0)**"
        return (f"{head}: Holm over {self.family_size} headline comparison(s) (family: {', '.join(self.family)}); "
                f"seeds {self.seeds[0]} vs {self.seeds[1]}; training noise: {self.noise}")

    def markdown(self) -> str:
        counts = {v: sum(r["verdict"] == v for r in self.rows) for v in ORDER}
        shown = ", ".join(f"{n} {v}" for v, n in counts.items() if n or v not in OPTIONAL)
        lines = [f"# Regression gate: `{self.candidate}` against `{self.baseline}`", "",
                 shown + f" ({len(self.rows)} comparisons)", ""]
        if self.rows:
            df = pd.DataFrame(sorted(self.rows, key=lambda r: ORDER.index(r["verdict"])))
            lines += [df.to_markdown(index=False, disable_numparse=True), ""]
        lines += [f"- warning: {w}" for w in self.warnings] + [f"- note: {n}" for n in self.notes]
        lines.append(f"- method: Δ = candidate − baseline of the means over seeds (perplexity: the log ratio of "
                     f"geometric means, shown as G_a·(e^x − 1) of the baseline's geometric mean; bits per byte: the "
                     f"difference); 95% interval "
                     f"Δ ± t·SE with SE² = item term (paired bootstrap over seed-averaged items) + each trained "
                     f"side's seed variance / its seeds (moderated with the prior where one is given), Satterthwaite "
                     f"df, p from the same t; a family metric regresses when worse than its tolerance with a "
                     f"Holm-adjusted p < {ALPHA:g}")
        return "\n".join(lines).rstrip() + "\n\n" + self.verdict() + "\n"


def _failed_row(metric: str, baseline: str, candidate: str, why: str) -> dict:
    """A row the gate counts as a regression without a difference to compute."""
    return {"metric": metric, "baseline": baseline, "candidate": candidate, "Δ [95% CI]": why,
            "items": "", "training noise": "", "p (Holm)": "", "tolerance": "", "verdict": "regressed"}


# Float noise: the same numbers summed in another order (a re-run, another BLAS or batch size) differ by ~1e-16
# relative. A difference whose whole interval lies within 1e-9 of the values (plus 1e-12, for values near 0) is
# equality, whatever the tolerance: far above rounding error, far below any change a metric can mean.
REL_NOISE, ABS_NOISE = 1e-9, 1e-12


def _noise(a: float, b: float) -> float:
    return REL_NOISE * max(abs(a), abs(b)) + ABS_NOISE


def _verdict(d: dict, worse_by: float, tol: float, noise: float = 0.0, significant: bool | None = None) -> str:
    """`significant`: the gate's test (Holm-adjusted p under ALPHA); None: the interval excludes zero."""
    sig = deltas.significant(d) if significant is None else significant and deltas.significant(d)
    if not sig or max(abs(d["lo"]), abs(d["hi"]), abs(d["delta"])) <= noise:
        return "indistinguishable"
    if worse_by > tol:
        return "regressed"
    return "improved" if worse_by < 0 else "worse, within tolerance"


def _items(d: dict) -> str:
    """How the difference was taken: `paired`, `paired, corpus bleu`, `paired by position`, `unpaired`."""
    if not d["paired"]:
        return "unpaired"
    return "paired" + (", " + d["kind"] if d["kind"].startswith("corpus") else "") + (
        " by position" if d["note"] and "by position" in d["note"] else "")


def _compare_metric(name: str, a: list[dict], b: list[dict], a_items: list[dict], b_items: list[dict],
                    priors: prior.Priors | None, key: str, trained: tuple[bool, bool]) -> dict:
    """One configuration's metric over both sides' seeds: the difference, its interval and p (not yet a verdict).
    `a`/`b`: the stored metric of each seed; `a_items`/`b_items`: each seed's items file."""
    m = describe(name)
    sa, sb = deltas.seed_scores(a_items, name), deltas.seed_scores(b_items, name)
    ma, mb = _metric(a), _metric(b)
    d = deltas.difference(ma, mb, sa, sb)
    a_values, b_values = [x["value"] for x in a], [x["value"] for x in b]
    shown_a, shown_b = prior.mean_value(name, a_values), prior.mean_value(name, b_values)
    out = {"name": name, "d": d, "a": shown_a, "b": shown_b}
    if not all(prior.finite(d[k]) for k in ("delta", "lo", "hi")):  # a NaN interval would read as "indistinguishable"
        out["failed"] = _failed_row(name, m.fmt.format(shown_a), m.fmt.format(shown_b),
                                    f"the difference or its interval is not finite ({d['delta']}, "
                                    f"[{d['lo']}, {d['hi']}])")
        return out
    pa = priors.get(key, name) if priors else None
    n = min((x for x in (ma["n"], mb["n"]) if x), default=None)
    iv = prior.seed_aware(name, a_values, b_values, d,
                          prior.item_df(d, sa.groups if sa else None, sb.groups if sb else None, n),
                          pa, pa, *trained)
    if not all(prior.finite(iv[k]) for k in ("delta", "lo", "hi")):
        out["failed"] = _failed_row(name, m.fmt.format(shown_a), m.fmt.format(shown_b),
                                    f"the difference or its interval is not finite ({iv['delta']}, "
                                    f"[{iv['lo']}, {iv['hi']}])")
        return out
    signed = m.fmt.replace("{:", "{:+", 1)
    out.update(iv=iv, worse_by=-iv["delta"] if m.higher_is_better else iv["delta"], row={
        "metric": name, "baseline": m.fmt.format(shown_a), "candidate": m.fmt.format(shown_b),
        "Δ [95% CI]": f"{signed.format(iv['delta'])} [{signed.format(iv['lo'])}, {signed.format(iv['hi'])}]",
        "items": _items(d), "training noise": prior.noise_text(iv["terms"], trained)})
    return out


def compare(baseline: Path, candidate: Path, tolerance: float = 0.0, relative: bool = False,
            metrics: list[str] | None = None, per_metric: dict[str, float] | None = None,
            noise: Path | None = None) -> Report:
    """Pair the two folders' configurations and gate the headline metrics; ResultsError when the input is unusable.

    `metrics`: the family of headline metrics gated (default: family()); `noise`: a noise.json or its folder."""
    priors = prior.load_priors(noise)
    (a_set, a_old), (b_set, b_old) = current_set(load_results(baseline)), current_set(load_results(candidate))
    a_cells, b_cells = _by_key(a_set, Path(baseline)), _by_key(b_set, Path(candidate))
    common = sorted((k for k in a_cells if k in b_cells),  # the base cell first, then by label
                    key=lambda k: (a_cells[k][0]["cell"]["strategy"] != BASE, a_cells[k][0].get("label") or ""))
    if not common:
        raise ResultsError(f"{candidate}: no cell matches a cell of {baseline} (same strategy, parameters and "
                           "training config)")
    metrics = [m for value in metrics or [] for m in value.split(",") if m]
    heads = metrics or family([r for k in common for r in a_cells[k] if r["status"] == "ok"])
    report = Report(Path(baseline), Path(candidate), family=list(heads))
    swapped: list[str] = []  # the family as gated where tokenizers differ
    report.notes += [f"{where}: {len(old)} older cell(s) of another version or config left out (the newest run's "
                     "set is compared)" for where, old in ((baseline, a_old), (candidate, b_old)) if old]
    report.notes += [f"{side} model `{m}`: {note}" for side, results in (("baseline", a_set), ("candidate", b_set))
                     for m, note in caveats(results).items()]
    report.notes += [f"only in the candidate: `{rates.label(g)}` ({', '.join(r['id'] for r in g)})"
                     for k, g in b_cells.items() if k not in a_cells]
    for k, g in a_cells.items():
        if k in b_cells:
            continue
        ok = [r for r in g if r["status"] == "ok"]
        if ok:  # the candidate lost a configuration the baseline measured
            why = f"no cell in the candidate pairs with {', '.join(r['id'] for r in ok)}"
            report.rows.append({"cell": rates.label(g), **_failed_row("(cell)", "ok", "missing", why)})
        else:
            report.notes.append(f"only in the baseline: `{rates.label(g)}` ({g[0]['id']}, status {g[0]['status']})")
    seen: set[str] = set()
    pending: list[dict] = []  # comparisons awaiting the family's correction
    pairing: dict[str, list[str]] = {}  # how items were paired, where not simply by matching ids -> where
    for key in common:
        a_all, b_all = a_cells[key], b_cells[key]
        label = rates.label(a_all)  # the rate each side was trained with, where a search chose one
        if (other := rates.label(b_all)) != label:
            label = f"{label} (candidate: {other})"
        report.pairs[label] = (a_all[0]["id"], b_all[0]["id"])
        a_ok = [r for r in a_all if r["status"] == "ok"]
        if not a_ok:
            report.notes.append(f"`{label}`: baseline status {a_all[0]['status']}; nothing to compare against")
            continue
        if len(a_ok) < len(a_all):
            report.notes.append(f"`{label}`: baseline seed(s) "
                                f"{', '.join(str(r['cell'].get('seed')) for r in a_all if r['status'] != 'ok')} "
                                "not ok; compared over the others")
        if bad := [r for r in b_all if r["status"] != "ok"]:
            for r in bad:
                why = (r.get("reason") or "")[:120]
                report.rows.append({"cell": label + (f" seed={r['cell'].get('seed')}" if len(b_all) > 1 else ""),
                                    **_failed_row("(status)", "ok", r["status"], why)})
            continue
        if len(b_all) < len(a_ok):  # fewer seeds than the baseline finished: a lost cell, not a smaller sample
            why = (f"the candidate has {len(b_all)} seed(s) ({_seeds([b_all]) or '-'}), the baseline finished "
                   f"{len(a_ok)}")
            report.rows.append({"cell": label, **_failed_row("(cell)", "ok", "missing", why)})
            continue
        a_metrics = [r.get("metrics") or {} for r in a_ok]
        b_metrics = [r.get("metrics") or {} for r in b_all]
        for r, ms in zip(a_ok, a_metrics, strict=True):
            if not ms:
                raise ResultsError(f"{store.cell_file(baseline, r['id'])}: baseline cell `{label}` is ok but has "
                                   "no metrics to compare against")
        names = list(dict.fromkeys(n for ms in a_metrics for n in ms))
        for name in names:
            for r, ms in zip(a_ok, a_metrics, strict=True):
                if name not in ms or not isinstance(ms[name], dict) or not prior.finite(ms[name].get("value")):
                    raise ResultsError(f"{store.cell_file(baseline, r['id'])}: baseline metric {name} of `{label}` "
                                       f"is {ms.get(name)!r}, not a number; it cannot serve as the reference")
        seen.update(names)
        a_items = [load_items(baseline, r["id"]) for r in a_ok]
        b_items = [load_items(candidate, r["id"]) for r in b_all]
        trained = (a_ok[0]["cell"]["strategy"] != BASE, b_all[0]["cell"]["strategy"] != BASE)
        pair_heads, not_comparable = heads, ""
        if toks := tokenizers(a_ok, b_all):
            pair_heads = [f"{n}_bpb" if is_per_token(n) else n for n in heads]
            swapped += pair_heads
            lost = [f"{n}_bpb" for n in heads if is_per_token(n) and f"{n}_bpb" not in names]
            report.notes.append(f"`{label}`: different tokenizers, baseline {_tokenizer_text(a_ok, toks[0])} vs "
                                f"candidate {_tokenizer_text(b_all, toks[1])}: per-token perplexity is not "
                                "comparable and not gated; bits per byte is gated in its place")
            if lost:
                report.warnings.append(f"`{label}`: the baseline has no {', '.join(lost)} (results from before "
                                       "bits per byte were recorded): its perplexity is not gated at all; "
                                       "re-evaluate the baseline")
            not_comparable = "not gated: different tokenizers (per-token perplexity is not comparable)"
        for name in names:
            fmt = describe(name).fmt
            shown_a = fmt.format(prior.mean_value(name, [ms[name]["value"] for ms in a_metrics]))
            values = [ms.get(name).get("value") if isinstance(ms.get(name), dict) else None for ms in b_metrics]
            if any(name not in ms for ms in b_metrics) or not all(prior.finite(v) for v in values):
                shown = "missing" if any(name not in ms for ms in b_metrics) else str(
                    next(v for v in values if not prior.finite(v)))
                report.rows.append({"cell": label, **_failed_row(
                    name, shown_a, shown, "the candidate has no usable value for a metric the baseline measured")})
                continue
            tol = (per_metric or {}).get(name, tolerance)
            try:
                c = _compare_metric(name, [ms[name] for ms in a_metrics], [ms[name] for ms in b_metrics],
                                    a_items, b_items, priors, prior.config_label(a_ok[0]), trained)
            except PairingError as e:
                raise ResultsError(f"{candidate}: `{label}` {name}: {e}; compare needs the same eval items on "
                                   "both sides") from None
            if "failed" in c:
                report.rows.append({"cell": label, **c["failed"]})
                continue
            c.update(label=label, tol=tol * abs(c["a"]) if relative else tol, gated=name in pair_heads)
            if not_comparable and is_per_token(name):
                c.update(gated=False, not_comparable=not_comparable + (
                    f"; gated on {name}_bpb" if f"{name}_bpb" in pair_heads else ""))
            pending.append(c)
            if note := c["d"]["note"]:
                pairing.setdefault(note, []).append(f"`{label}` {name}")
    if metrics and (missing := [m for m in metrics if m not in seen]):
        raise ResultsError(f"{candidate}: metric(s) {', '.join(missing)} not measured on both sides of any pair")
    gated = [c for c in pending if c["gated"]]
    for c, q in zip(gated, holm([c["iv"]["p"] for c in gated]), strict=True):
        c["q"] = q
    wide: dict[str, list] = {}  # metric -> [(half-width, items, tolerance)] where the set is too small
    for c in pending:
        iv, tol = c["iv"], c["tol"]
        noise = _noise(c["a"], c["b"])
        if c.get("not_comparable"):
            verdict = "not comparable"
        elif c["gated"]:
            verdict = _verdict(iv, c["worse_by"], tol, noise, c["q"] < ALPHA)
        else:
            verdict = _verdict(iv, c["worse_by"], tol, noise)
            verdict = "worse, not gated" if verdict in ("regressed", "worse, within tolerance") else verdict
        report.rows.append({"cell": c["label"], **c["row"],
                            "p (Holm)": f"{c['q']:.2g}" if c["gated"] else c.get("not_comparable") or "not gated",
                            "tolerance": f"{tol:g}", "verdict": verdict})
        if c["gated"]:
            report.tests.append({"cell": c["label"], "metric": c["name"], "delta": iv["delta"], "p": iv["p"],
                                 "q": c["q"], "verdict": verdict})
        half = (iv["hi"] - iv["lo"]) / 2
        # Power: an interval wider than the tolerance cannot tell a regression of that size from noise.
        if c["gated"] and tol > 0 and half > tol and verdict != "regressed":
            wide.setdefault(c["name"], []).append((half, c["d"].get("n_paired") or None, tol))
    report.warnings += [f"{note}: {', '.join(where)}" for note, where in pairing.items()]
    for name, cases in wide.items():
        half, n, tol = max(cases, key=lambda c: c[0] - c[2])
        report.warnings.append(f"{name}: 95% intervals up to ±{half:.3g} ({n or '?'} items) are wider than the "
                               f"tolerance {tol:g} in {len(cases)} cell(s); a change of that size cannot be told "
                               "from noise on this set")
    if swapped:
        report.family = list(dict.fromkeys(heads + swapped))
    report.family_size = len(gated)
    report.seeds = (_seeds([a_set]), _seeds([b_set]))
    report.noise = _noise_summary(pending, priors)
    return report


def _noise_summary(pending: list[dict], priors: prior.Priors | None) -> str:
    """The verdict line's account of training noise."""
    trained = [c for c in pending if c["row"]["training noise"] != "none (base: no training)"]
    if not trained:
        return "none (base models only)"
    if all(c["iv"]["item_only"] for c in trained):
        return ("not measured (one seed per side, no prior: the intervals cover new items, not a "
                "new training run)")
    if priors is not None:
        return f"moderated with prior {priors.text}"
    return "each side's own seeds only (no prior: few degrees of freedom, wide intervals)"


def parse_tolerances(values: list[str] | None) -> tuple[float, dict[str, float]]:
    """`["0.01", "ppl_general=0.05"]` -> (0.01, {"ppl_general": 0.05}); ResultsError on anything else."""
    default, per_metric = 0.0, {}
    for value in values or []:
        name, _, number = value.rpartition("=")
        try:
            x = float(number)
        except ValueError:
            raise ResultsError(f"--tolerance {value!r}: expected a number or METRIC=NUMBER") from None
        if not math.isfinite(x) or x < 0:
            raise ResultsError(f"--tolerance {value!r}: must be a finite number, not negative (input error)")
        if name:
            per_metric[name] = x
        else:
            default = x
    return default, per_metric
