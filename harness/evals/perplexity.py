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
import torch.nn.functional as F

from harness.data import bos_ids, load_split, scored_pair
from harness.data.native import read_documents, spread
from harness.evals.items import example_groups, example_ids, item_ids, labels
from harness.evals.lm import continuation_logprobs, encode_pair
from harness.paths import resolve_data


@torch.no_grad()
def text_nll(model, tok, texts: list[str], max_length: int = 512,
             stride: int | None = None) -> tuple[list[float], list[int]]:
    """Sum of token NLLs and token count per text (BOS prepended, every other token scored once).

    Texts longer than `max_length` are scored by windows that advance by `stride` tokens,
    each scoring only its new tokens with at least `max_length - stride` tokens of context
    (transformers' perplexity guide); `stride` must be below `max_length`, or the first
    token of each later window would go unscored.
    """
    device = next(model.parameters()).device
    stride = stride or max_length // 2
    if not 0 < stride < max_length:
        raise ValueError(f"perplexity stride must be at least 1 and below the window ({max_length} tokens), got {stride}")
    sums, counts = [], []
    for text in texts:
        ids = bos_ids(tok, text) + tok(text, add_special_tokens=False)["input_ids"]
        total, prev_end = 0.0, 0
        for begin in range(0, len(ids), stride):  # the recipe of transformers' perplexity guide
            end = min(begin + max_length, len(ids))
            window = torch.tensor([ids[begin:end]], device=device)
            logits = model(input_ids=window).logits[0, -window.shape[1]:]  # drop virtual-token positions
            logp = F.log_softmax(logits[:-1].float(), dim=-1)
            token_lp = logp.gather(-1, window[0, 1:, None])[:, 0]
            new = min(end - prev_end, end - begin - 1)  # targets not scored by an earlier window
            total -= token_lp[len(token_lp) - new:].sum().item()
            prev_end = end
            if end == len(ids):
                break
        sums.append(total)
        counts.append(len(ids) - 1)
    return sums, counts


def completion_nll(model, tok, pairs: list[tuple[str, str]]) -> tuple[list[float], list[int]]:
    """NLL of each completion given its prompt (the in-domain target tokens)."""

    lls = continuation_logprobs(model, tok, pairs)
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
    out = {"ppl_in_domain": completion_nll(model, tok, pairs)}
    ids, groups = {"ppl_in_domain": example_ids(rows)}, {"ppl_in_domain": example_groups(rows)}
    if cell.eval.general_text:
        docs = spread(read_documents(resolve_data(cell.eval.general_text, root)), cell.eval.limit)
        size, stride = window(model, cell.eval)
        out["ppl_general"] = text_nll(model, tok, docs, max_length=size, stride=stride)
        ids["ppl_general"] = item_ids(docs)
    return {**out, **labels(ids, groups)}
