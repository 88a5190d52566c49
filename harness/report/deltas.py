"""The difference between two cells on one metric, with a 95% interval: paired over items where possible.

Both the leaderboard (deltas against the base, "indistinguishable from the best") and the
regression gate use this one rule:

- the two sides' items are joined on their ids (harness.evals.items.align): partial overlap pairs
  the shared items and says how many were left out; no id in common raises PairingError; items
  files without ids pair by position when the counts match, and say so;
- paired: a bootstrap that resamples the paired items (or their groups, where the set declares
  groups) for both sides at once: the mean of per-item differences; perplexity re-computed from
  the resampled documents' NLL and token sums (token counts must match: the same tokens scored); bits per
  byte (`*_bpb`, stored like perplexity as [nll_sums, byte_counts]) from their NLL and byte sums, each side
  over its own bytes, so it pairs across tokenizers (a count that differs is said in the note); a corpus
  metric (BLEU, chrF) re-scored on each side from the resampled items' summed statistics, so its delta is a
  corpus delta;
- otherwise: the difference of the two values with the two intervals' half-widths added in
  quadrature (a normal approximation; said so wherever it is used, `paired=False`).

Multi-seed rows use their per-item scores (and corpus statistics) averaged over seeds.

    d = difference(base_metric, cell_metric, seed_scores([base_items], name), seed_scores([cell_items], name))
    d["delta"], d["lo"], d["hi"], d["paired"], d["kind"], d["method"], d["note"], significant(d)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from harness.evals import stats
from harness.evals.items import align
from harness.suites import describe, is_bpb


@dataclass(frozen=True)
class Side:
    """One cell's per-item record of one metric, as stored in items/<id>.json (None: not stored)."""

    scores: list  # one score per item; perplexity: [nll_sums, token_counts]
    ids: list[str] | None = None
    groups: list[str] | None = None
    stats: list[list[float]] | None = None  # a corpus metric's per-item sufficient statistics
    corpus: str = ""  # its kind ("bleu", "chrf"), see metrics.Metric.corpus
    bpb: bool = False  # scores are [nll_sums, byte_counts]: bits per byte, not perplexity

    @property
    def n(self) -> int:
        return len(self.scores[0]) if is_ppl(self.scores) else len(self.scores)


def is_ppl(scores) -> bool:
    """Perplexity items are stored as [nll_sums, token_counts] (bits per byte: [nll_sums, byte_counts]); every
    other metric as one score per item."""
    return (isinstance(scores, list) and len(scores) == 2 and all(isinstance(s, list) for s in scores)
            and len(scores[0]) == len(scores[1]))


def _same(values: list) -> bool:
    return all(v == values[0] for v in values)


def seed_scores(items: list[dict], name: str) -> Side | None:
    """Per-item scores of `name` averaged over seeds, with ids, groups and corpus statistics where stored;
    None when a seed lacks them or the seeds scored different items."""
    per_seed = [it.get(name) for it in items]
    if not per_seed or any(s is None for s in per_seed):
        return None
    ids = [(it.get("_ids") or {}).get(name) for it in items]
    if not _same(ids):
        return None
    groups = next((g for it in items if (g := (it.get("_groups") or {}).get(name)) is not None), None)
    if is_ppl(per_seed[0]):
        if not all(is_ppl(s) and s[1] == per_seed[0][1] for s in per_seed):
            return None
        return Side([np.mean([s[0] for s in per_seed], axis=0).tolist(), per_seed[0][1]], ids[0], groups,
                    bpb=is_bpb(name))
    if len({len(s) for s in per_seed}) != 1 or any(isinstance(x, (list, dict, str)) for x in per_seed[0]):
        return None
    scores = np.mean(np.asarray(per_seed, dtype=float), axis=0).tolist()
    kind, seed_stats = describe(name).corpus, [it.get(f"_{name}_stats") for it in items]
    if kind and all(s is not None and len(s) == len(scores) for s in seed_stats):
        return Side(scores, ids[0], groups, np.mean(np.asarray(seed_stats, dtype=float), axis=0).tolist(), kind)
    return Side(scores, ids[0], groups)


def _side(scores) -> Side | None:
    """A Side as is; a bare list of scores (no ids) wrapped as one."""
    return scores if isinstance(scores, Side) or scores is None else Side(scores)


def _paired(a: Side, b: Side) -> dict | None:
    pairing = align(a.ids, b.ids, a.n, b.n)
    if pairing is None:
        return None
    ia, ib = pairing.a, pairing.b
    groups = (np.asarray(a.groups)[ia].tolist() if a.groups is not None
              else np.asarray(b.groups)[ib].tolist() if b.groups is not None else None)
    method = "paired-cluster-bootstrap" if groups is not None else "paired-bootstrap"
    note = pairing.note
    if is_ppl(a.scores) and is_ppl(b.scores):
        pick_a = [np.asarray(x)[ia].tolist() for x in a.scores]
        pick_b = [np.asarray(x)[ib].tolist() for x in b.scores]
        if a.bpb or b.bpb:
            kind = "bits per byte"
            delta, lo, hi = stats.paired_bpb_diff_ci(tuple(pick_a), tuple(pick_b), groups=groups)
            if (off := sum(x != y for x, y in zip(pick_a[1], pick_b[1], strict=True))):
                note = "; ".join(filter(None, [note, f"byte counts differ on {off} of {pairing.n} paired documents "
                                               "(a completion cut at max_length tokens keeps other text under "
                                               "another tokenizer): each side over its own bytes"]))
        else:
            kind = "perplexity"
            try:
                delta, lo, hi = stats.paired_ppl_diff_ci(tuple(pick_a), tuple(pick_b), groups=groups)
            except ValueError:  # other token counts (another tokenizer): not the same documents as scored
                return None
    elif is_ppl(a.scores) or is_ppl(b.scores):
        return None
    elif a.stats is not None and b.stats is not None and a.corpus and a.corpus == b.corpus:
        from harness.evals.generation import corpus_scorer

        kind = f"corpus {a.corpus}"
        delta, lo, hi = stats.paired_corpus_diff_ci(np.asarray(a.stats)[ia], np.asarray(b.stats)[ib],
                                                    corpus_scorer(a.corpus), groups=groups)
    else:
        kind = "mean"
        delta, lo, hi = stats.paired_diff_ci(np.asarray(a.scores, dtype=float)[ia],
                                             np.asarray(b.scores, dtype=float)[ib], groups=groups)
    return {"delta": delta, "lo": lo, "hi": hi, "paired": True, "kind": kind, "method": method,
            "n_paired": pairing.n, "note": note}


def difference(a: dict, b: dict, a_scores=None, b_scores=None) -> dict:
    """b minus a for one metric; `a`/`b` are {"value", "lo", "hi"}, the scores `Side`s (or bare lists, or None).

    Raises harness.evals.items.PairingError when both sides carry item ids and share none.
    """
    sa, sb = _side(a_scores), _side(b_scores)
    if sa is not None and sb is not None and sa.n > 0 and (pair := _paired(sa, sb)):
        return pair
    delta = b["value"] - a["value"]
    half = math.hypot((a["hi"] - a["lo"]) / 2, (b["hi"] - b["lo"]) / 2)
    return {"delta": delta, "lo": delta - half, "hi": delta + half, "paired": False, "kind": "values",
            "method": "unpaired", "n_paired": 0, "note": None}


def significant(d: dict) -> bool:
    """The interval excludes zero."""
    return d["lo"] > 0 or d["hi"] < 0
