"""The regression gate: a candidate results folder against a baseline, cell by cell, metric by metric.

Cells pair by strategy, parameters, training config and seed, ignoring the model id (the point
is swapping the base model). Each metric's difference (candidate minus baseline) gets a 95%
interval by deltas.difference: a paired bootstrap over the items both sides scored (joined on
item ids; corpus metrics re-scored as corpora), else the two intervals combined (said in the
table). Items that only one side scored are counted in a warning; no shared item at all stops
the gate (exit 2): the two folders did not measure the same thing. A metric regressed when it is
worse than the tolerance (in the metric's own units; with `relative`, a fraction of the baseline value)
and its interval excludes zero; a difference within float noise (REL_NOISE, ABS_NOISE) never is.
The gate fails closed: a cell that finished on the baseline and is missing or not ok on the
candidate, a baseline metric the candidate lacks, and a candidate metric that is null, NaN or has a
non-finite interval are regressions (exit 1); a baseline that cannot serve as the reference (an ok
cell without metrics, a null or NaN value) and a non-finite tolerance are input errors
(ResultsError, exit 2). The report's last line says which verdict.

    report = compare(Path("results/qwen2.5"), Path("results/qwen3"), tolerance=0.01)
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
from harness.report import deltas, rates
from harness.report.frame import ResultsError, current_set, load_items, load_results
from harness.suites import describe

ORDER = ("regressed", "improved", "worse, within tolerance", "indistinguishable")


def pair_key(result: dict) -> str:
    cell = result["cell"]
    return json.dumps({k: cell.get(k) for k in ("strategy", "params", "train", "seed")}, sort_keys=True)


def _by_key(results: list[dict], where: Path) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for r in results:
        key = pair_key(r)
        if key in out:
            raise ResultsError(f"{where}: cells {out[key]['id']} and {r['id']} have the same strategy, parameters, "
                               "training config and seed (two models in one folder?); compare needs one per folder")
        out[key] = r
    return out


def _metric(m: dict) -> dict:
    return {"value": m["value"], "lo": m.get("ci_low", m["value"]), "hi": m.get("ci_high", m["value"]),
            "n": m.get("n")}


@dataclass
class Report:
    baseline: Path
    candidate: Path
    rows: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    pairs: dict[str, tuple[str, str]] = field(default_factory=dict)  # cell label -> (baseline id, candidate id)

    @property
    def exit_code(self) -> int:
        return 1 if any(r["verdict"] == "regressed" for r in self.rows) else 0

    def markdown(self) -> str:
        counts = {v: sum(r["verdict"] == v for r in self.rows) for v in ORDER}
        lines = [f"# Regression gate: `{self.candidate}` against `{self.baseline}`", "",
                 ", ".join(f"{n} {v}" for v, n in counts.items()) + f" ({len(self.rows)} comparisons)", ""]
        if self.rows:
            df = pd.DataFrame(sorted(self.rows, key=lambda r: ORDER.index(r["verdict"])))
            lines += [df.to_markdown(index=False, disable_numparse=True), ""]
        lines += [f"- warning: {w}" for w in self.warnings] + [f"- note: {n}" for n in self.notes]
        verdict = (f"**gate: FAIL (exit 1): {counts['regressed']} regression(s)**" if self.exit_code
                   else "**gate: pass (exit 0)**")
        return "\n".join(lines).rstrip() + "\n\n" + verdict + "\n"


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _failed_row(metric: str, baseline: str, candidate: str, why: str) -> dict:
    """A row the gate counts as a regression without a difference to compute."""
    return {"metric": metric, "baseline": baseline, "candidate": candidate, "Δ [95% CI]": why,
            "items": "", "tolerance": "", "verdict": "regressed"}


# Float noise: the same numbers summed in another order (a re-run, another BLAS or batch size) differ by ~1e-16
# relative. A difference whose whole interval lies within 1e-9 of the values (plus 1e-12, for values near 0) is
# equality, whatever the tolerance: far above rounding error, far below any change a metric can mean.
REL_NOISE, ABS_NOISE = 1e-9, 1e-12


def _noise(a: float, b: float) -> float:
    return REL_NOISE * max(abs(a), abs(b)) + ABS_NOISE


def _verdict(d: dict, worse_by: float, tol: float, noise: float = 0.0) -> str:
    if not deltas.significant(d) or max(abs(d["lo"]), abs(d["hi"]), abs(d["delta"])) <= noise:
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


def _compare_metric(name: str, a: dict, b: dict, a_items: dict, b_items: dict, tol: float
                    ) -> tuple[dict, tuple | None, str | None]:
    m = describe(name)
    d = deltas.difference(_metric(a), _metric(b), deltas.seed_scores([a_items], name),
                          deltas.seed_scores([b_items], name))
    if not all(_finite(d[k]) for k in ("delta", "lo", "hi")):  # a NaN interval would read as "indistinguishable"
        return _failed_row(name, m.fmt.format(a["value"]), m.fmt.format(b["value"]),
                           f"the difference or its interval is not finite ({d['delta']}, [{d['lo']}, {d['hi']}])"
                           ), None
    worse_by = -d["delta"] if m.higher_is_better else d["delta"]
    signed = m.fmt.replace("{:", "{:+", 1)
    row = {"metric": name, "baseline": m.fmt.format(a["value"]), "candidate": m.fmt.format(b["value"]),
           "Δ [95% CI]": f"{signed.format(d['delta'])} [{signed.format(d['lo'])}, {signed.format(d['hi'])}]",
           "items": _items(d), "tolerance": f"{tol:g}",
           "verdict": _verdict(d, worse_by, tol, _noise(a["value"], b["value"]))}
    half = (d["hi"] - d["lo"]) / 2
    # Power: an interval wider than the tolerance cannot tell a regression of that size from noise.
    underpowered = tol > 0 and half > tol and row["verdict"] != "regressed"
    return row, (half, b.get("n")) if underpowered else None, d["note"]


def compare(baseline: Path, candidate: Path, tolerance: float = 0.0, relative: bool = False,
            metrics: list[str] | None = None, per_metric: dict[str, float] | None = None) -> Report:
    """Pair the two folders' cells and gate every shared metric; ResultsError when the input is unusable."""
    (a_set, a_old), (b_set, b_old) = current_set(load_results(baseline)), current_set(load_results(candidate))
    a_cells, b_cells = _by_key(a_set, Path(baseline)), _by_key(b_set, Path(candidate))
    common = sorted((k for k in a_cells if k in b_cells),  # the base cell first, then by label
                    key=lambda k: (a_cells[k]["cell"]["strategy"] != "base", a_cells[k].get("label") or ""))
    if not common:
        raise ResultsError(f"{candidate}: no cell matches a cell of {baseline} (same strategy, parameters, "
                           "training config and seed)")
    report = Report(Path(baseline), Path(candidate))
    report.notes += [f"{where}: {len(old)} older cell(s) of another version or config left out (the newest run's "
                     "set is compared)" for where, old in ((baseline, a_old), (candidate, b_old)) if old]
    report.notes += [f"only in the candidate: `{rates.label([r])}` ({r['id']})" for k, r in b_cells.items()
                     if k not in a_cells]
    for k, r in a_cells.items():
        if k in b_cells:
            continue
        if r["status"] == "ok":  # the candidate lost a cell the baseline measured
            why = f"no cell in the candidate pairs with {r['id']}"
            report.rows.append({"cell": rates.label([r]), **_failed_row("(cell)", "ok", "missing", why)})
        else:
            report.notes.append(f"only in the baseline: `{rates.label([r])}` ({r['id']}, status {r['status']})")
    seen: set[str] = set()
    wide: dict[str, list] = {}  # metric -> [(half-width, items, tolerance)] where the set is too small
    pairing: dict[str, list[str]] = {}  # how items were paired, where not simply by matching ids -> where
    for key in common:
        a, b = a_cells[key], b_cells[key]
        label = rates.label([a])  # the rate each side was trained with, where a search chose one
        if (other := rates.label([b])) != label:
            label = f"{label} (candidate: {other})"
        report.pairs[label] = (a["id"], b["id"])
        if a["status"] != "ok":
            report.notes.append(f"`{label}`: baseline status {a['status']}; nothing to compare against")
            continue
        if b["status"] != "ok":
            why = (b.get("reason") or "")[:120]
            report.rows.append({"cell": label, **_failed_row("(status)", "ok", b["status"], why)})
            continue
        a_metrics, b_metrics = a.get("metrics") or {}, b.get("metrics") or {}
        if not a_metrics:
            raise ResultsError(f"{store.cell_file(baseline, a['id'])}: baseline cell `{label}` is ok but has no "
                               "metrics to compare against")
        a_items, b_items = load_items(baseline, a["id"]), load_items(candidate, b["id"])
        names = [n for n in (metrics or a_metrics) if n in a_metrics]
        for name in names:
            if not isinstance(a_metrics[name], dict) or not _finite(a_metrics[name].get("value")):
                raise ResultsError(f"{store.cell_file(baseline, a['id'])}: baseline metric {name} of `{label}` is "
                                   f"{a_metrics[name]!r}, not a number; it cannot serve as the reference")
        seen.update(names)
        for name in names:
            m = b_metrics.get(name)
            value = m.get("value") if isinstance(m, dict) else None
            if name not in b_metrics or not _finite(value):
                shown = "missing" if name not in b_metrics else str(value)
                report.rows.append({"cell": label, **_failed_row(
                    name, describe(name).fmt.format(a_metrics[name]["value"]), shown,
                    "the candidate has no usable value for a metric the baseline measured")})
                continue
            tol = (per_metric or {}).get(name, tolerance)
            tol = tol * abs(a_metrics[name]["value"]) if relative else tol
            try:
                row, power, note = _compare_metric(name, a_metrics[name], b_metrics[name], a_items, b_items, tol)
            except PairingError as e:
                raise ResultsError(f"{candidate}: `{label}` {name}: {e}; compare needs the same eval items on "
                                   "both sides") from None
            report.rows.append({"cell": label, **row})
            if note:
                pairing.setdefault(note, []).append(f"`{label}` {name}")
            if power:
                wide.setdefault(name, []).append((*power, tol))
    report.warnings += [f"{note}: {', '.join(where)}" for note, where in pairing.items()]
    for name, cases in wide.items():
        half, n, tol = max(cases, key=lambda c: c[0] - c[2])
        report.warnings.append(f"{name}: 95% intervals up to ±{half:.3g} ({n or '?'} items) are wider than the "
                               f"tolerance {tol:g} in {len(cases)} cell(s); a change of that size cannot be told "
                               "from noise on this set")
    if metrics and (missing := [m for m in metrics if m not in seen]):
        raise ResultsError(f"{candidate}: metric(s) {', '.join(missing)} not measured on both sides of any pair")
    return report


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
