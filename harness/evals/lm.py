"""Model-output primitives every suite is built on: continuation log-likelihoods and greedy text.

Context/continuation are split the way lm-eval's `_encode_pair` does it (trailing
spaces of the context move to the continuation; the continuation's tokens are those
of the joint encoding after the context's), with the BOS token prepended.

    logps = continuation_logprobs(model, tok, [("Question: 2+2?\\nAnswer:", " 4")])
    texts = greedy(model, tok, ["<|user|>\\nHi<|end|>\\n<|assistant|>\\n"], max_new_tokens=16)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from harness.data import bos_ids


def encode_pair(tok, context: str, continuation: str) -> tuple[list[int], list[int]]:
    n_spaces = len(context) - len(context.rstrip(" "))
    if n_spaces:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    whole = tok(context + continuation, add_special_tokens=False)["input_ids"]
    ctx = tok(context, add_special_tokens=False)["input_ids"]
    return bos_ids(tok, context) + whole[: len(ctx)], whole[len(ctx):]


@torch.no_grad()
def continuation_logprobs(model, tok, pairs: list[tuple[str, str]], batch_size: int = 32,
                          max_length: int | None = None) -> list[float]:
    """Sum of log P(continuation | context) for each (context, continuation) pair."""
    max_length = max_length or getattr(model.config, "max_position_embeddings", 2048)
    device = next(model.parameters()).device
    encoded = [encode_pair(tok, c, x) for c, x in pairs]
    out: list[float] = []
    for i in range(0, len(encoded), batch_size):
        batch = encoded[i:i + batch_size]
        seqs = [(c + x)[-max_length:] for c, x in batch]  # left-truncate long contexts
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), tok.pad_token_id or 0, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for j, s in enumerate(seqs):
            ids[j, : len(s)] = torch.tensor(s)
            mask[j, : len(s)] = 1
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
        logits = logits[:, -width:]  # prompt tuning prepends virtual-token positions to the logits
        logp = F.log_softmax(logits[:, :-1], dim=-1)
        for j, ((_, cont), s) in enumerate(zip(batch, seqs)):
            n = len(cont)
            if n == 0:  # an empty continuation (an empty reply) has log-probability 0; s[-0:] would be all of s
                out.append(0.0)
                continue
            targets = torch.tensor(s[-n:], device=device)
            out.append(logp[j, len(s) - n - 1: len(s) - 1].gather(-1, targets[:, None]).sum().item())
    return out


@torch.no_grad()
def greedy(model, tok, prompts: list[str], max_new_tokens: int = 64, batch_size: int = 16,
           stop: list[str] | None = None) -> list[str]:
    """Greedy completions of raw prompts (chat templates already applied), cut at `stop` strings."""
    device = next(model.parameters()).device
    stop = stop or []
    eos_ids = [i for i in {tok.eos_token_id, tok.convert_tokens_to_ids("<|end|>")} if isinstance(i, int) and i >= 0]
    texts = []
    for i in range(0, len(prompts), batch_size):
        encoded = [bos_ids(tok, p) + tok(p, add_special_tokens=False)["input_ids"] for p in prompts[i:i + batch_size]]
        width = max(len(e) for e in encoded)
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0
        ids = torch.tensor([[pad] * (width - len(e)) + e for e in encoded])  # left padding
        mask = torch.tensor([[0] * (width - len(e)) + [1] * len(e) for e in encoded])
        gen = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), do_sample=False,
                             max_new_tokens=max_new_tokens, eos_token_id=eos_ids, pad_token_id=pad)
        for row in gen[:, width:]:
            text = tok.decode(row, skip_special_tokens=True)
            for s in stop:
                text = text.split(s)[0]
            texts.append(text.strip())
    return texts
