"""The task suite: greedy replies to the test split, scored by the metrics the matrix names.

Generation is greedy with a fixed `max_new_tokens` and cut at the matrix's `stop` strings,
so every cell answers the same prompts the same way. A test row's `output` may be one
reference or a list of them (multi-reference ROUGE/BLEU/chrF). With `task_answer: gsm`,
exact match and accuracy compare the `#### n` answers (lm-eval's GSM8K strict match).

    scores = run(model, tok, cell)   # {"task_exact_match": [1.0, 0.0, ...], "task_bleu": CorpusScores, ...,
                                     #  "_ids": {metric: [item id, ...]}, "_groups": {metric: [person, ...]}}
"""

from __future__ import annotations

from pathlib import Path

from harness.data import load_split, prompt_text, reference
from harness.data.native import spread
from harness.evals.generation import bleu, chrf, exact_match, gsm_answer, label_match, rouge
from harness.evals.items import example_groups, example_ids, labels
from harness.evals.lm import greedy


def score(predictions: list[str], references: list[list[str]], metrics: list[str], answer: str = "text") -> dict:
    """Per-item (or corpus) scores named `task_<metric>`, for the metrics asked for."""
    if answer == "gsm":  # the reference's own `#### n` line, or the bare number a row may hold
        picked = [gsm_answer(p) for p in predictions]
        targets = [[gsm_answer(r) or r.strip() for r in refs] for refs in references]
    else:
        picked, targets = predictions, references
    out: dict = {}
    if "exact_match" in metrics:  # a match with any one reference counts
        out["task_exact_match"] = [max(exact_match(p, t) for t in ts) for p, ts in zip(picked, targets, strict=True)]
    if "accuracy" in metrics:
        out["task_accuracy"] = [max(label_match(p, t) for t in ts) for p, ts in zip(picked, targets, strict=True)]
    if "rouge" in metrics:
        for kind, scores in rouge(predictions, references).items():
            out[f"task_rouge_{kind[5:].lower()}"] = scores
    if "bleu" in metrics:
        out["task_bleu"] = bleu(predictions, references)
    if "chrf" in metrics:
        out["task_chrf"] = chrf(predictions, references)
    return out


def run(model, tok, cell) -> dict:
    rows = spread(load_split(cell.data, Path(cell.root), "test"), cell.eval.limit)
    preds = greedy(model, tok, [prompt_text(tok, r, cell.data.template) for r in rows],
                   max_new_tokens=cell.eval.max_new_tokens, batch_size=cell.eval.batch_size, stop=cell.eval.stop)
    refs = [ref if isinstance(ref := reference(r), list) else [ref] for r in rows]
    prompts = [next((m["content"] for m in reversed(r["messages"][:-1]) if m["role"] == "user"), "") for r in rows]
    # prompts and references beside the replies: the leaderboard's sample outputs read them, never the data
    out = {**score(preds, refs, cell.eval.task_metrics, cell.eval.task_answer), "_predictions": preds,
           "_prompts": prompts, "_references": refs}
    ids, groups = example_ids(rows), example_groups(rows)
    return {**out, **labels({k: ids for k in out}, {k: groups for k in out})}
