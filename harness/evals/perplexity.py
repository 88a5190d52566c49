"""The perplexity suite: token-level NLL in-domain and on a general corpus; long texts by sliding window.

In-domain is the completion tokens of the held-out (validation) split, given their prompts;
general is every token of a text corpus (JSONL `text` or plain text, e.g. WikiText-2). The
same tokens are scored for every cell of a matrix, so perplexities pair item by item.
Perplexity = exp(sum of token NLLs / token count), over all documents together.

    nll, n = text_nll(model, tok, ["Ada lives in Karsk."])   # per-text sums and token counts
    scores = run(model, tok, cell)                          # {"ppl_in_domain": (nll, n), "ppl_general": ...}
"""

from __future__ import annotations

from pathlib import Path

import torch

from harness.data import bos_ids, load_split, scored_pair
from harness.data.native import read_documents, spread
from harness.evals.batching import CPU_TOKENS, by_length, right_padded, rows_per_batch
from harness.evals.items import example_groups, example_ids, item_ids, labels
from harness.evals.lm import DEFAULT_BATCH, continuation_logprobs, encode_pair, keeps_logits, pad_id, sum_logprob
from harness.paths import resolve_data


def windows(ids: list[int], max_length: int, stride: int) -> list[tuple[list[int], int]]:
    """(window, targets it scores) for one document: windows advance by `stride` tokens, and each scores
    only the tokens no earlier window did, its last ones (the recipe of transformers' perplexity guide)."""
    out, prev_end = [], 0
    for begin in range(0, len(ids), stride):
        end = min(begin + max_length, len(ids))
        out.append((ids[begin:end], min(end - prev_end, end - begin - 1)))
        prev_end = end
        if end == len(ids):
            break
    return out


@torch.no_grad()
def text_nll(model, tok, texts: list[str], max_length: int = 512, stride: int | None = None,
             batch_size: int = DEFAULT_BATCH) -> tuple[list[float], list[int]]:
    """Sum of token NLLs and token count per text (BOS prepended, every other token scored once).

    Texts longer than `max_length` are scored by windows that advance by `stride` tokens,
    each scoring only its new tokens with at least `max_length - stride` tokens of context
    (transformers' perplexity guide); `stride` must be below `max_length`, or the first
    token of each later window would go unscored. The windows of all texts are batched
    together, longest first, right-padded (real tokens keep their positions; padding is masked).
    """
    device = next(model.parameters()).device
    stride = stride or max_length // 2
    if not 0 < stride < max_length:
        raise ValueError(f"perplexity stride must be at least 1 and below the window ({max_length} tokens), "
                         f"got {stride}")
    docs = [bos_ids(tok, t) + tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    spans = [(d, w, new) for d, ids in enumerate(docs) for w, new in windows(ids, max_length, stride)]
    sums = [0.0] * len(texts)
    rows = rows_per_batch(model, batch_size, max_length, max_length, "perplexity")
    pad = pad_id(tok)
    keep_ok = keeps_logits(model)
    for batch in by_length([len(w) for _, w, _ in spans], rows, CPU_TOKENS if device.type == "cpu" else None):
        ids, mask = right_padded([spans[i][1] for i in batch], pad)
        width = ids.shape[1]
        # a later window scores only its new tokens: the vocabulary projection only for the last `keep` positions
        keep = max(width - len(spans[i][1]) + spans[i][2] + 1 for i in batch) if keep_ok else width
        kwargs = {"logits_to_keep": keep} if keep < width else {}
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device), **kwargs).logits
        logits = logits[:, -keep:]  # drop virtual-token positions (prompt tuning)
        start = width - keep
        for j, i in enumerate(batch):
            d, w, new = spans[i]
            sums[d] -= sum_logprob(logits[j, len(w) - 1 - new - start:len(w) - 1 - start], w[len(w) - new:])
    return sums, [len(ids) - 1 for ids in docs]


def completion_nll(model, tok, pairs: list[tuple[str, str]],
                   batch_size: int = DEFAULT_BATCH) -> tuple[list[float], list[int]]:
    """NLL of each completion given its prompt (the in-domain target tokens)."""
    lls = continuation_logprobs(model, tok, pairs, batch_size)
    counts = [len(encode_pair(tok, p, c)[1]) for p, c in pairs]
    return [-x for x in lls], counts


def window(model, spec) -> tuple[int, int]:
    """(window, stride) for the general corpus: the matrix's, with the window capped at the model's context."""
    size = min(spec.ppl_window, getattr(model.config, "max_position_embeddings", spec.ppl_window))
    stride = spec.ppl_stride or size // 2
    if stride >= size:
        raise ValueError(f"eval.ppl_stride ({stride}) must be below the window ({size} tokens for this model)")
    return size, stride


def run(model, tok, cell) -> dict:
    root = Path(cell.root)
    rows = spread(load_split(cell.data, root, "validation"), cell.eval.limit)
    pairs = [scored_pair(tok, r, cell.data.template, cell.data.max_length) for r in rows]  # the tokens trained on
    out = {"ppl_in_domain": completion_nll(model, tok, pairs, cell.eval.batch_size)}
    ids, groups = {"ppl_in_domain": example_ids(rows)}, {"ppl_in_domain": example_groups(rows)}
    if cell.eval.general_text:
        docs = spread(read_documents(resolve_data(cell.eval.general_text, root)), cell.eval.limit)
        size, stride = window(model, cell.eval)
        out["ppl_general"] = text_nll(model, tok, docs, max_length=size, stride=stride,
                                      batch_size=cell.eval.batch_size)
        ids["ppl_general"] = item_ids(docs)
    return {**out, **labels(ids, groups)}
