"""The regression gate: a candidate results folder against a baseline, cell by cell, metric by metric.

Cells pair by strategy, parameters, training config and seed, ignoring the model id (the point
is swapping the base model). Each metric's difference (candidate minus baseline) gets a 95%
interval by deltas.difference: a paired bootstrap over the items both sides scored (joined on
item ids; corpus metrics re-scored as corpora), else the two intervals combined (said in the
table). Items that only one side scored are counted in a warning; no shared item at all stops
the gate (exit 2): the two folders did not measure the same thing. A metric regressed when it is
worse than the tolerance (in the metric's own units; with `relative`, a fraction of the baseline value)
and its interval excludes zero; a difference within float noise (REL_NOISE, ABS_NOISE) never is.
A cell that finished on the baseline and not on the candidate regressed too.

    report = compare(Path("results/qwen2.5"), Path("results/qwen3"), tolerance=0.01)
    print(report.markdown()); sys.exit(report.exit_code)    # 1 when anything regressed
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from harness.evals.items import PairingError
from harness.evals.metrics import describe
from harness.report import deltas
from harness.report.frame import ResultsError, current_set, load_items, load_results

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
        return "\n".join(lines).rstrip() + "\n"


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
    for side, cells, other in (("baseline", a_cells, b_cells), ("candidate", b_cells, a_cells)):
        report.notes += [f"only in the {side}: `{r['label']}` ({r['id']})" for k, r in cells.items() if k not in other]
    seen: set[str] = set()
    wide: dict[str, list] = {}  # metric -> [(half-width, items, tolerance)] where the set is too small
    pairing: dict[str, list[str]] = {}  # how items were paired, where not simply by matching ids -> where
    for key in common:
        a, b = a_cells[key], b_cells[key]
        label = a.get("label") or a["cell"]["strategy"]
        report.pairs[label] = (a["id"], b["id"])
        if a["status"] != "ok":
            report.notes.append(f"`{label}`: baseline status {a['status']}; nothing to compare against")
            continue
        if b["status"] != "ok":
            report.rows.append({"cell": label, "metric": "(status)", "baseline": "ok", "candidate": b["status"],
                                "Δ [95% CI]": (b.get("reason") or "")[:120], "items": "", "tolerance": "",
                                "verdict": "regressed"})
            continue
        a_items, b_items = load_items(baseline, a["id"]), load_items(candidate, b["id"])
        names = [n for n in (metrics or a["metrics"]) if n in a["metrics"] and n in b["metrics"]]
        seen.update(names)
        for name in names:
            tol = (per_metric or {}).get(name, tolerance)
            tol = tol * abs(a["metrics"][name]["value"]) if relative else tol
            try:
                row, power, note = _compare_metric(name, a["metrics"][name], b["metrics"][name], a_items, b_items,
                                                   tol)
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
        if x < 0:
            raise ResultsError(f"--tolerance {value!r}: must not be negative")
        if name:
            per_metric[name] = x
        else:
            default = x
    return default, per_metric
