"""Model-output primitives every suite is built on: continuation log-likelihoods and greedy text.

Context/continuation are split the way lm-eval's `_encode_pair` does it (trailing
spaces of the context move to the continuation; the continuation's tokens are those
of the joint encoding after the context's), with the BOS token prepended. Rows are
batched longest first (harness/evals/batching.py) and returned in input order.

    logps = continuation_logprobs(model, tok, [("Question: 2+2?\\nAnswer:", " 4")])
    per_group = shared_context_logprobs(model, tok, [[("Q?\\nAnswer:", " yes"), ("Q?\\nAnswer:", " no")]])
    texts = greedy(model, tok, ["<|user|>\\nHi<|end|>\\n<|assistant|>\\n"], max_new_tokens=16)
"""

from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F
from transformers import StoppingCriteria, StoppingCriteriaList

from harness.data import bos_ids
from harness.evals.batching import CPU_TOKENS, by_length, right_padded, rows_per_batch

DEFAULT_BATCH = 16  # rows per forward when no eval.batch_size is given (eval.batch_size's default too)


def encode_pair(tok, context: str, continuation: str) -> tuple[list[int], list[int]]:
    n_spaces = len(context) - len(context.rstrip(" "))
    if n_spaces:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    whole = tok(context + continuation, add_special_tokens=False)["input_ids"]
    ctx = tok(context, add_special_tokens=False)["input_ids"]
    return bos_ids(tok, context) + whole[: len(ctx)], whole[len(ctx):]


def pad_id(tok) -> int:
    return tok.pad_token_id if tok.pad_token_id is not None else 0


def _max_length(model, max_length: int | None) -> int:
    return max_length or getattr(model.config, "max_position_embeddings", 2048)


def sum_logprob(logits: torch.Tensor, targets: list[int]) -> float:
    """Sum of log-softmax(logits[t])[targets[t]]: row t of `logits` predicts targets[t]."""
    if not targets:  # an empty continuation (an empty reply) has log-probability 0
        return 0.0
    target = torch.tensor(targets, device=logits.device)
    return -F.cross_entropy(logits.float(), target, reduction="sum").item()


def encoded_logprobs(model, encoded: list[tuple[list[int], list[int]]], pad: int, batch_size: int = DEFAULT_BATCH,
                     max_length: int | None = None) -> list[float]:
    """Sum of log P(continuation | context) for each (context ids, continuation ids), each sequence whole."""
    return [total for total, _, _ in encoded_logprob_parts(model, encoded, pad, batch_size, max_length)]


@torch.no_grad()
def encoded_logprob_parts(model, encoded: list[tuple[list[int], list[int]]], pad: int,
                          batch_size: int = DEFAULT_BATCH, max_length: int | None = None,
                          masks: list[list[bool]] | None = None) -> list[tuple[float, float, int]]:
    """(sum of log P(continuation | context), the same sum over the continuation tokens its mask keeps, how many
    continuation tokens were scored: its last ones, where context and continuation exceed `max_length`).
    Without masks the second sum is the first."""
    max_length = _max_length(model, max_length)
    device = next(model.parameters()).device
    seqs = [(c + x)[-max_length:] for c, x in encoded]  # left-truncate long contexts
    rows = rows_per_batch(model, batch_size, max(map(len, seqs), default=0), max(map(len, seqs), default=0),
                          "log-likelihood")
    scored = {i: min(len(encoded[i][1]), len(s) - 1) for i, s in enumerate(seqs)}
    out = [(0.0, 0.0, scored[i]) for i in range(len(seqs))]
    keep_ok = keeps_logits(model)
    for batch in by_length([len(s) for s in seqs], rows, CPU_TOKENS if device.type == "cpu" else None):
        ids, mask = right_padded([seqs[i] for i in batch], pad)
        width = ids.shape[1]
        # the vocabulary projection only where a continuation token is predicted: the last `keep` positions
        keep = max(width - len(seqs[i]) + scored[i] + 1 for i in batch) if keep_ok else width
        kwargs = {"logits_to_keep": keep} if keep < width else {}
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device), **kwargs).logits
        logits = logits[:, -keep:]  # prompt tuning prepends virtual-token positions to the logits
        for j, i in enumerate(batch):
            s, n, start = seqs[i], scored[i], width - keep
            rows_i, targets = logits[j, len(s) - n - 1 - start: len(s) - 1 - start], s[len(s) - n:]
            total = kept = sum_logprob(rows_i, targets)
            if masks is not None and not all(text := masks[i][len(masks[i]) - n:]):
                kept = sum_logprob(rows_i[torch.tensor(text, dtype=torch.bool, device=rows_i.device)],
                                   [t for t, k in zip(targets, text, strict=True) if k])
            out[i] = (total, kept, n)
    return out


def continuation_logprobs(model, tok, pairs: list[tuple[str, str]], batch_size: int = DEFAULT_BATCH,
                          max_length: int | None = None) -> list[float]:
    """Sum of log P(continuation | context) for each (context, continuation) pair."""
    return encoded_logprobs(model, [encode_pair(tok, c, x) for c, x in pairs], pad_id(tok), batch_size, max_length)


def _prompt_learning(model) -> bool:
    """A peft prefix- or prompt-tuned model (its forward adds virtual tokens or a learned KV prefix itself)."""
    return bool(getattr(getattr(model, "active_peft_config", None), "is_prompt_learning", False))


def keeps_logits(model) -> bool:
    """The forward can compute logits for its last positions only (`logits_to_keep`); prompt-learning peft
    models are left out, since their forward builds its own inputs around the virtual tokens."""
    return "logits_to_keep" in _cache_kwargs(model)[1] and not _prompt_learning(model)


def _cache_kwargs(model) -> tuple[str, dict]:
    """The forward's name for the KV cache (transformers 5.24 renamed `past_key_values` to `cache`), and
    `logits_to_keep=1` where the forward takes it (a context pass needs no logits over the vocabulary)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    params = inspect.signature(base.forward).parameters
    return ("cache" if "cache" in params else "past_key_values"), ({"logits_to_keep": 1}
                                                                   if "logits_to_keep" in params else {})


def _common_prefix(seqs: list[list[int]]) -> int:
    n = min(map(len, seqs))
    return next((i for i in range(n) if len({s[i] for s in seqs}) > 1), n)


@torch.no_grad()
def encoded_group_logprobs(model, groups: list[list[tuple[list[int], list[int]]]], pad: int,
                           batch_size: int = DEFAULT_BATCH, max_length: int | None = None) -> list[list[float]]:
    """`encoded_logprobs` per group of (context ids, continuation ids) that share a context, each context run once.

    The split is on each joint encoding (encode_pair), so options can disagree on the context's last tokens
    (one merges with the option's first): the part they share is the common prefix of their context ids.
    All of it but its last token is run once per group and its KV cache copied to each option's row; each
    option then runs the rest (the last shared token, its own context tokens, the continuation) on top,
    right-padded, at positions that continue the context's. The log-likelihoods equal whole-sequence scoring.
    Whole-sequence scoring instead for: prefix/prompt-tuned peft models (peft's forward inserts its own KV
    prefix or virtual-token embeddings into every call, so a second call on a cache would insert them again,
    mid-sequence), groups whose contexts share under two tokens, single options, and sequences over the window.
    """
    max_length = _max_length(model, max_length)
    device = next(model.parameters()).device
    out = [[0.0] * len(g) for g in groups]
    shared, whole = [], []  # (group, cached tokens); (group, option)
    cacheable = not _prompt_learning(model)
    for g, options in enumerate(groups):
        keep = _common_prefix([c for c, _ in options]) - 1 if options else 0
        if not cacheable or keep < 1 or len(options) < 2 or max(len(c + x) for c, x in options) > max_length:
            whole += [(g, k) for k in range(len(options))]
        else:
            shared.append((g, keep))
    if whole:
        scores = encoded_logprobs(model, [groups[g][k] for g, k in whole], pad, batch_size, max_length)
        for (g, k), score in zip(whole, scores):
            out[g][k] = score
    if not shared:
        return out
    name, no_logits = _cache_kwargs(model)
    longest = max(len(c + x) for g, _ in shared for c, x in groups[g])
    rows = rows_per_batch(model, batch_size, longest, longest, "shared-context log-likelihood")
    for batch in _group_batches(shared, groups, rows):
        ids, mask = right_padded([groups[g][0][0][:keep] for g, keep in batch], pad)
        context = model(input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=True, **no_logits)
        cache = getattr(context, name)
        row_of = [b for b, (g, _) in enumerate(batch) for _ in groups[g]]
        cache.batch_select_indices(torch.tensor(row_of, device=device))  # each option's row: its group's context
        opts = [(g, k, keep) for g, keep in batch for k in range(len(groups[g]))]
        rest_ids, rest_mask = right_padded([(groups[g][k][0] + groups[g][k][1])[keep:] for g, k, keep in opts], pad)
        positions = torch.tensor([keep for _, _, keep in opts])[:, None] + torch.arange(rest_ids.shape[1])
        attention = torch.cat([mask[row_of], rest_mask], 1)  # the context's padding stays masked in the cache
        logits = model(input_ids=rest_ids.to(device), attention_mask=attention.to(device),
                       position_ids=positions.to(device), use_cache=True, **{name: cache}).logits
        for r, (g, k, keep) in enumerate(opts):
            ctx, cont = groups[g][k]
            start = len(ctx) - 1 - keep  # the row predicting the continuation's first token
            out[g][k] = sum_logprob(logits[r, start:start + len(cont)], cont)
    return out


def _group_batches(shared: list[tuple[int, int]], groups, rows: int) -> list[list[tuple[int, int]]]:
    """Shared-context groups, longest first, as many per batch as keep their options within `rows` (at least one)."""
    order = sorted(shared, key=lambda gk: -max(len(c + x) for c, x in groups[gk[0]]))
    batches: list[list[tuple[int, int]]] = []
    filled = rows
    for gk in order:
        if filled + len(groups[gk[0]]) > rows:
            batches.append([])
            filled = 0
        batches[-1].append(gk)
        filled += len(groups[gk[0]])
    return batches


def shared_context_logprobs(model, tok, groups: list[list[tuple[str, str]]], batch_size: int = DEFAULT_BATCH,
                            max_length: int | None = None) -> list[list[float]]:
    """`continuation_logprobs` for groups of (context, continuation) pairs with one context per group."""
    encoded = [[encode_pair(tok, c, x) for c, x in pairs] for pairs in groups]
    return encoded_group_logprobs(model, encoded, pad_id(tok), batch_size, max_length)


class StopStrings(StoppingCriteria):
    """Marks a row done once its generated text (special tokens skipped, as the reply is decoded) holds a stop
    string, so a batch stops as soon as every row is done. The prompt is left out: a stop string completed
    across the prompt's end is not in the reply, and the reply is cut only within its own text."""

    def __init__(self, tok, stop: list[str], prompt_width: int):
        self.tok, self.stop, self.prompt_width = tok, stop, prompt_width

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        texts = self.tok.batch_decode(input_ids[:, self.prompt_width:], skip_special_tokens=True)
        return torch.tensor([any(s in t for s in self.stop) for t in texts], device=input_ids.device)


def cut(text: str, stop: list[str]) -> str:
    """The reply up to its first stop string, stripped."""
    for s in stop:
        text = text.split(s)[0]
    return text.strip()


# generation settings under which greedy decoding is a plain argmax: anything else goes to `generate`
_PLAIN_ARGMAX = {"repetition_penalty": (None, 1.0), "no_repeat_ngram_size": (None, 0), "bad_words_ids": (None,),
                 "suppress_tokens": (None,), "begin_suppress_tokens": (None,), "forced_bos_token_id": (None,),
                 "forced_eos_token_id": (None,), "min_length": (None, 0), "min_new_tokens": (None, 0),
                 "sequence_bias": (None,), "encoder_repetition_penalty": (None, 1.0)}


def decodes_itself(model) -> bool:
    """Greedy decoding can run our own loop: a causal model whose forward takes a cache and explicit
    positions, no prompt learning (peft's forward builds its own inputs), no logits processor configured."""
    config = getattr(model, "generation_config", None)
    if _prompt_learning(model) or getattr(model.config, "is_encoder_decoder", False) or config is None:
        return False
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    params = inspect.signature(inner.forward).parameters
    return "position_ids" in params and all(getattr(config, k, None) in ok for k, ok in _PLAIN_ARGMAX.items())


def _decode(model, ids: torch.Tensor, mask: torch.Tensor, max_new_tokens: int, eos_ids: list[int],
            done) -> list[list[int]]:
    """Greedy tokens per left-padded row, each row dropped from the batch (and its KV cache) once it ends.

    A row ends at an EOS id (kept, as `generate` keeps it) or when `done(row, tokens)` says so; the rest of
    the batch runs on without it, so a batch costs the sum of its replies' lengths, not its longest times
    its rows. Positions follow `generate`'s (the mask's running count), so the tokens equal its greedy ones.
    """
    name, one_logit = _cache_kwargs(model)
    positions = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, **one_logit)
    cache, nxt = getattr(out, name), positions[:, -1:] + 1
    tokens: list[list[int]] = [[] for _ in range(ids.shape[0])]
    alive = list(range(ids.shape[0]))
    eos = set(eos_ids)
    for step in range(max_new_tokens):
        picked = out.logits[:, -1].float().argmax(-1)
        keep = []
        for j, (row, t) in enumerate(zip(alive, picked.tolist())):
            tokens[row].append(t)
            if t not in eos and not done(row, tokens[row]):
                keep.append(j)
        if not keep or step == max_new_tokens - 1:
            break
        if len(keep) < len(alive):
            index = torch.tensor(keep, device=ids.device)
            cache.batch_select_indices(index)
            mask, nxt, picked = mask[index], nxt[index], picked[index]
            alive = [alive[j] for j in keep]
        mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], 1)
        out = model(input_ids=picked[:, None], attention_mask=mask, position_ids=nxt, use_cache=True, **{name: cache})
        nxt = nxt + 1
    return tokens


@torch.no_grad()
def greedy(model, tok, prompts: list[str], max_new_tokens: int = 64, batch_size: int = DEFAULT_BATCH,
           stop: list[str] | None = None) -> list[str]:
    """Greedy completions of raw prompts (chat templates already applied), cut at `stop` strings.

    Prompts run longest first, left-padded (generation appends on the right), with the KV cache on; a row
    stops at EOS, `<|end|>` or a stop string. Where `decodes_itself`, a finished row leaves its batch at
    once (`_decode`); otherwise `generate` runs, and a batch stops once all its rows have.
    """
    device = next(model.parameters()).device
    stop = stop or []
    eos_ids = [i for i in {tok.eos_token_id, tok.convert_tokens_to_ids("<|end|>")} if isinstance(i, int) and i >= 0]
    pad = pad_id(tok)
    encoded = [bos_ids(tok, p) + tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
    texts = [""] * len(prompts)
    rows = rows_per_batch(model, batch_size, max(map(len, encoded), default=0) + max_new_tokens, 1, "generation")
    own = decodes_itself(model)

    def done(_row: int, tokens: list[int]) -> bool:  # a stop string in the reply's text so far
        return bool(stop) and any(s in tok.decode(tokens, skip_special_tokens=True) for s in stop)

    for batch in by_length([len(e) for e in encoded], rows):
        width = max(len(encoded[i]) for i in batch)
        ids = torch.tensor([[pad] * (width - len(encoded[i])) + encoded[i] for i in batch]).to(device)
        mask = torch.tensor([[0] * (width - len(encoded[i])) + [1] * len(encoded[i]) for i in batch]).to(device)
        if own:
            replies = _decode(model, ids, mask, max_new_tokens, eos_ids, done)
        else:
            criteria = StoppingCriteriaList([StopStrings(tok, stop, width)] if stop else [])
            gen = model.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=max_new_tokens,
                                 eos_token_id=eos_ids, pad_token_id=pad, use_cache=True, stopping_criteria=criteria)
            replies = gen[:, width:]
        for i, row in zip(batch, replies):
            texts[i] = cut(tok.decode(row, skip_special_tokens=True), stop)
    return texts
