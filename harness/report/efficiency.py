"""What each cell costs to serve (harness.evals.inference) and one efficiency-aware score, its formula printed.

The score follows PEFT-Bench's PSCP in shape (task performance times soft penalties for trainable
parameters, inference cost and training memory) but with no constants to choose: every cost is a
ratio within the matrix, each penalty is 1 / (1 + cost), so a free cost leaves the gain whole and a
cost equal to the reference halves it:

    efficiency = gain / ((1 + p) · (1 + m) · (1 + ℓ))
    gain = Δ of the primary task metric over the base model (sign turned so that better is positive)
    p    = trainable parameters / the base model's parameters
    m    = training peak memory / the matrix's largest training peak memory
    ℓ    = extra per-token generation latency of the deployed model over the base model's, as a share of
           the base's (deployed: merged where the strategy merges); 0 when not slower

A gain that is not above zero gives no score (–): a cheap cell that learned nothing is not efficient.
The score is a ranking aid with no interval; the gain's interval is in the Δ columns.

    lines = section(rows)
"""

from __future__ import annotations

import pandas as pd

from harness.report.frame import BASE
from harness.report.table import format_number, metric_names, number, primary_metric
from harness.suites import describe

TITLE = "Inference cost and efficiency"
FORMULA = ("efficiency = gain / ((1 + p) · (1 + m) · (1 + ℓ)); gain = the primary task metric's Δ over the base; "
           "p = trainable / base parameters; m = training peak memory / the matrix's largest; ℓ = extra per-token "
           "generation latency of the deployed (merged where it merges) model as a share of the base's, "
           "0 if not slower")


def deployed(inference: dict) -> dict:
    """The timings of the form one would serve: merged where the strategy merges."""
    return inference.get("merged") or inference


def score(row: dict, base: dict, quality: str, largest_peak: float | None) -> float | None:
    d = row["vs_base"].get(quality)
    inf, base_inf = row.get("inference"), base.get("inference")
    if d is None or not inf or not base_inf or not base.get("total_params"):
        return None
    gain = d["delta"] if describe(quality).higher_is_better else -d["delta"]
    if gain <= 0:
        return None
    p = (row.get("trainable_params") or 0) / base["total_params"]
    peak = row["usage"].get("peak_memory_mb")
    m = peak / largest_peak if peak and largest_peak else 0.0
    base_ms, ms = deployed(base_inf).get("ms_per_token"), deployed(inf).get("ms_per_token")
    latency = max(0.0, ms / base_ms - 1) if base_ms and ms is not None else 0.0
    return gain / ((1 + p) * (1 + m) * (1 + latency))


def table(rows: list[dict]) -> tuple[str, pd.DataFrame] | None:
    """The section's note and its table, for the markdown and the page (None when no cell measured it)."""
    measured = [r for r in rows if r["status"] == "ok" and r.get("inference")]
    if not measured:
        return None
    quality = primary_metric(metric_names(rows))
    bases = {r["model"]: r for r in rows if r["strategy"] == BASE}
    peaks = [r["usage"].get("peak_memory_mb") for r in measured if r["usage"].get("peak_memory_mb")]
    largest = max(peaks) if peaks else None
    recs = []
    for r in measured:
        inf = r["inference"]
        merged = inf.get("merged") or {}
        base = bases.get(r["model"])
        eff = score(r, base, quality, largest) if base and quality and r is not base else None
        recs.append({"cell": r["label"], "prompt tok/s": format_number(inf.get("prompt_tokens_per_s")),
                     "ms/token": format_number(inf.get("ms_per_token"), "{:,.2f}"),
                     "merged prompt tok/s": format_number(merged.get("prompt_tokens_per_s")),
                     "merged ms/token": format_number(merged.get("ms_per_token"), "{:,.2f}"),
                     "merge": inf.get("merge", "–"), "virtual tokens": inf.get("virtual_tokens", 0),
                     "artifact": format_number(r.get("artifact_bytes")),
                     "efficiency": number(eff, "{:.4f}") if eff is not None else "–"})
    first = measured[0]["inference"]
    note = (f"Measured on the evaluation machine after the suites: prompt tok/s is one forward over the first "
            f"{first.get('prompts', '?')} test prompts in one batch; ms/token is greedy decoding at batch 1 of "
            f"exactly {first.get('new_tokens', '?')} new tokens less the one-token call, per extra token; medians "
            f"after a warm-up. Virtual tokens: the prompt length prefix or prompt tuning adds to every request; "
            f"artifact: bytes the strategy saves. Task metric of the gain: "
            f"{describe(quality).label if quality else '–'}.")
    return note, pd.DataFrame(recs)


def section(rows: list[dict]) -> list[str]:
    """The leaderboard's inference-cost section (nothing when no cell measured it)."""
    if (made := table(rows)) is None:
        return []
    note, df = made
    return [f"## {TITLE}", "", note, "", f"`{FORMULA}`", "", df.to_markdown(index=False, disable_numparse=True), ""]
