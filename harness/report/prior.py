"""Training-noise priors (noise.json) and seed-aware differences, for the gate, the takeaways and the plan.

`harness noise RESULTS_DIR` measures, in a results folder of one matrix run with several seeds, the
variance over seeds of every trained configuration's metric values, and writes it to RESULTS_DIR/noise.json:

    {"matrix": "smoke-noise", "source": "results/smoke-noise", "seeds": 6, "seed_list": [0, ..., 5],
     "configurations": {"lora r=4": {"strategy": "lora", "params": {"r": 4}, "seeds": [0, ..., 5],
                                     "metrics": {"task_exact_match": {"var": 0.0009, "df": 5, "seeds": 6,
                                                                      "scale": "value"}, ...}}}}

A configuration is the stored label without ` seed=N` and ` lr=X` (strategy and parameters as the matrix
labels them); perplexity metrics (names starting with `ppl`, bits per byte `*_bpb` aside) are measured on
the log scale. Priors are
never pooled across configurations: each is looked up by its own key and metric. A folder whose
configurations have fewer than MIN_SEEDS seeds is refused (a variance on 1 degree of freedom is no prior).

    write_noise(Path("results/smoke-noise"))                  # -> results/smoke-noise/noise.json
    priors = load_priors(Path("results/smoke-noise"))         # the folder or the file
    priors.get("lora r=4", "task_exact_match")                # noise.Prior(var, df, source) or None
    seed_aware(name, a_values, b_values, d, item_df, ...)     # Δ, interval, p with training noise
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness import store
from harness.matrix import BASE
from harness.report.frame import ResultsError, current_set, load_results
from harness.report.noise import Prior, SeedTerm, seed_term, t_interval
from harness.suites import describe, is_bpb, is_per_token

NOISE_FILE = "noise.json"
MIN_SEEDS = 3
Z = 1.959964  # the bootstrap's 95% interval spans ±Z standard errors
_SEED = re.compile(r" seed=-?\d+$")
_LR = re.compile(r" lr=\S+")


def config_label(result: dict) -> str:
    """The configuration a cell is a seed of: its stored label without ` seed=N` and ` lr=X`."""
    text = result.get("label") or result["cell"]["strategy"]
    return _LR.sub("", _SEED.sub("", text)).strip()


def on_scale(name: str, value: float) -> float:
    return math.log(value) if is_per_token(name) else float(value)


def finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def measure(results_dir: Path) -> dict:
    """noise.json's content for a multi-seed results folder; ResultsError when it cannot serve as a prior."""
    results_dir = Path(results_dir)
    results, _ = current_set(load_results(results_dir))
    groups: dict[str, list[dict]] = {}
    for r in results:
        if r["cell"]["strategy"] != BASE and r["status"] == "ok":
            groups.setdefault(config_label(r), []).append(r)
    if not groups:
        raise ResultsError(f"{results_dir}: no finished trained cell; a noise prior needs trained configurations "
                           f"with at least {MIN_SEEDS} seeds each")
    for key, group in groups.items():
        seeds = [r["cell"].get("seed") for r in group]
        if len(set(seeds)) != len(seeds):
            raise ResultsError(f"{results_dir}: configuration `{key}` has two cells of one seed (two models in one "
                               "folder?); a noise prior is measured on one matrix run of one model")
    if short := {k: len(g) for k, g in groups.items() if len(g) < MIN_SEEDS}:
        raise ResultsError(f"{results_dir}: a noise prior needs at least {MIN_SEEDS} finished seeds per "
                           "configuration; " + ", ".join(f"`{k}` has {n}" for k, n in short.items())
                           + " (run the matrix with more `seeds:`)")
    configurations = {}
    for key, group in sorted(groups.items()):
        group = sorted(group, key=lambda r: r["cell"].get("seed") or 0)
        metrics = {}
        for name in dict.fromkeys(n for r in group for n in r.get("metrics") or {}):
            values = [on_scale(name, m["value"]) for r in group
                      if isinstance(m := (r.get("metrics") or {}).get(name), dict) and finite(m.get("value"))
                      and (m["value"] > 0 or not is_per_token(name))]
            if len(values) >= MIN_SEEDS:
                metrics[name] = {"var": float(np.var(values, ddof=1)), "df": len(values) - 1, "seeds": len(values),
                                 "scale": "log" if is_per_token(name) else "value"}
        first = group[0]["cell"]
        configurations[key] = {"strategy": first["strategy"], "params": first.get("params") or {},
                               "seeds": [r["cell"].get("seed") for r in group], "metrics": metrics}
    seed_list = sorted({s for c in configurations.values() for s in c["seeds"]}, key=lambda s: (s is None, s))
    return {"matrix": results[0].get("matrix") or results[0]["cell"].get("matrix"), "source": str(results_dir),
            "seeds": min(len(c["seeds"]) for c in configurations.values()), "seed_list": seed_list,
            "configurations": configurations}


def write_noise(results_dir: Path) -> Path:
    """Measure the folder's training noise and write RESULTS_DIR/noise.json atomically."""
    doc = measure(results_dir)
    out = Path(results_dir) / NOISE_FILE
    store.write_json_atomic(out, doc)
    return out


@dataclass
class Priors:
    """A noise.json: per configuration key and metric, the seed variance a reference run measured."""

    path: Path
    source: str
    seeds: int
    configurations: dict = field(default_factory=dict)

    @property
    def text(self) -> str:
        return f"{self.source} ({self.seeds} seeds)"

    def get(self, key: str, name: str) -> Prior | None:
        m = ((self.configurations.get(key) or {}).get("metrics") or {}).get(name)
        return Prior(float(m["var"]), float(m["df"]), self.text) if m else None


def load_priors(path: Path | str | None) -> Priors | None:
    """A noise.json, given as the file or the folder holding it (None: no prior); ResultsError when unreadable."""
    if path is None:
        return None
    path = Path(path)
    file = path / NOISE_FILE if path.is_dir() else path
    if not file.is_file():
        raise ResultsError(f"{file}: no noise prior there (`harness noise RESULTS_DIR` writes one from a run with "
                           f"at least {MIN_SEEDS} seeds)")
    try:
        doc = json.loads(file.read_text("utf-8"))
        configurations = doc["configurations"]
        for c in configurations.values():
            for m in c["metrics"].values():
                if not (finite(m["var"]) and m["var"] >= 0 and finite(m["df"]) and m["df"] >= 1):
                    raise ValueError(f"variance {m['var']!r} on {m['df']!r} df")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise ResultsError(f"{file}: not a noise prior ({type(e).__name__}: {e})") from None
    return Priors(file, str(doc.get("source") or file.parent), int(doc.get("seeds") or 0), configurations)


def item_df(d: dict, groups_a: list | None = None, groups_b: list | None = None, n: int | None = None) -> float:
    """Degrees of freedom of the item term: paired groups (or items) − 1; unpaired: the items − 1 (n)."""
    groups = groups_a if groups_a is not None else groups_b
    if groups is not None:
        return max(1, len(set(groups)) - 1)
    count = d.get("n_paired") or n
    return max(1, count - 1) if count else math.inf


def mean_value(name: str, values: list[float]) -> float:
    """A configuration's value over its seeds: the mean, for perplexity the geometric mean."""
    return float(math.exp(np.mean([math.log(v) for v in values]))) if is_per_token(name) else float(np.mean(values))


def seed_aware(name: str, a_values: list[float], b_values: list[float], d: dict, df_items: float,
               a_prior: Prior | None = None, b_prior: Prior | None = None,
               a_trained: bool = True, b_trained: bool = True) -> dict:
    """b minus a over seeds, with the item term of `d` (deltas.difference on seed-averaged items) and each trained
    side's seed term (noise.seed_term with its prior); {delta, lo, hi, p, se, df, terms, item_only}, in the
    metric's units.

    Perplexity: Δ is the log ratio of geometric means, the item SE is carried to the log scale by the delta
    method (SE / ppl at the geometric mean of the two sides), and Δ and its interval ends are shown as
    differences from the baseline's geometric mean G_a: G_a·(e^x − 1). Without any seed term (one seed per
    side and no prior, or base cells) the interval is the item bootstrap's as it is, and p comes from its SE."""
    item_se = (d["hi"] - d["lo"]) / (2 * Z)
    ta = seed_term([on_scale(name, v) for v in a_values], a_prior) if a_trained else None
    tb = seed_term([on_scale(name, v) for v in b_values], b_prior) if b_trained else None
    if ta is None and tb is None:
        p = t_interval(d["delta"], item_se, df_items, [])["p"]
        return {"delta": d["delta"], "lo": d["lo"], "hi": d["hi"], "p": p, "se": item_se, "df": df_items,
                "terms": (None, None), "item_only": True}
    ga, gb = mean_value(name, a_values), mean_value(name, b_values)
    if is_per_token(name):
        delta = math.log(gb) - math.log(ga)
        iv = t_interval(delta, item_se / math.sqrt(ga * gb), df_items, [ta, tb])
        shown = {k: ga * math.expm1(iv[k]) for k in ("delta", "lo", "hi")}
    else:
        iv = t_interval(gb - ga, item_se, df_items, [ta, tb])
        shown = {k: iv[k] for k in ("delta", "lo", "hi")}
        bounded = not (is_bpb(name) or describe(name).corpus) and all(0 <= v <= 1 for v in [*a_values, *b_values])
        if bounded:  # a share on both sides (accuracy, a rate): the difference lies in [-1, 1]
            shown.update(lo=max(shown["lo"], -1.0), hi=min(shown["hi"], 1.0))
    return {**shown, "p": iv["p"], "se": iv["se"], "df": iv["df"], "terms": (ta, tb), "item_only": False}


def noise_text(terms: tuple[SeedTerm | None, SeedTerm | None], trained: tuple[bool, bool]) -> str:
    """What an interval's training-noise term is made of, for a table cell."""
    if not any(trained):
        return "none (base: no training)"
    if all(t is None for t in terms):
        return "training noise not measured"
    parts = []
    for side, t, tr in zip(("a", "b"), terms, trained, strict=True):
        if tr:
            parts.append(f"{side}: not measured" if t is None else f"{side}: {t.seeds} seed(s), {t.source}")
    return "; ".join(parts)
