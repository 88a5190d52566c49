"""Token-level negative log-likelihood and perplexity; long texts by sliding window.

    nll, n = text_nll(model, tok, ["Ada lives in Karsk."])   # per-text sums and token counts
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from harness.data import bos_ids
from harness.evals.lm import continuation_logprobs, encode_pair


@torch.no_grad()
def text_nll(model, tok, texts: list[str], max_length: int = 512, stride: int | None = None) -> tuple[list[float], list[int]]:
    """Sum of token NLLs and token count per text (BOS prepended, every other token scored once).

    Texts longer than `max_length` are scored by windows that advance by `stride` tokens,
    each scoring only its new tokens with up to `max_length - stride` tokens of context.
    """
    device = next(model.parameters()).device
    stride = stride or max_length // 2
    sums, counts = [], []
    for text in texts:
        ids = bos_ids(tok) + tok(text, add_special_tokens=False)["input_ids"]
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
