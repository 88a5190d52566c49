"""lm-eval's HFLM with shared-context log-likelihoods: a context runs once, its keys/values serve every option.

HFLM scores each (context, continuation) pair as its own sequence, so a four-option MMLU cloze
question encodes its question four times. `FastHFLM` overrides only `_loglikelihood_tokens`,
which receives the pairs already tokenized by HFLM's own `loglikelihood` (`_encode_pair`, the
BOS/EOS prefix for an empty context), so the tokens scored are exactly HFLM's. Requests are
grouped by identical context tokens; a batch of contexts runs once (right-padded), each
context's KV cache is copied to one row per continuation, and all continuations but their
last token run in one more forward with explicit positions. A continuation's first token is
scored by the context's last logit, the rest by the continuation pass; (logprob, is_greedy)
equals HFLM's within float rounding (tests: 1e-4 per request, identical choices).

A batch holds at most `batch_size` continuation rows, so memory is about what HFLM uses at the same
batch size. Requests go to HFLM's own path where sharing is not the same computation:
- context + continuation longer than max_length + 1: HFLM truncates the joined sequence from
  the left, so each option would see a different context;
- a prompt-learning PEFT model (prefix or prompt tuning): PeftModel.forward prepends virtual
  tokens or builds its own past_key_values, which a cache passed in would collide with;
- a seq2seq model, `batch_size: auto`, and rolling windows (`override_bs`, perplexity tasks).
`seconds` accumulates wall time per request type (loglikelihood, generate_until) for the
caller's timing record.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from lm_eval.models.huggingface import HFLM

Request = tuple[tuple[str, str] | None, list[int], list[int]]


class FastHFLM(HFLM):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seconds: dict[str, float] = {}

    def loglikelihood(self, requests, disable_tqdm: bool = False):
        return self._timed("loglikelihood", super().loglikelihood, requests, disable_tqdm)

    def generate_until(self, requests, disable_tqdm: bool = False):
        return self._timed("generate_until", super().generate_until, requests, disable_tqdm)

    def _timed(self, kind: str, fn, requests, disable_tqdm: bool):
        start = time.perf_counter()
        try:
            return fn(requests, disable_tqdm=disable_tqdm)
        finally:
            self.seconds[kind] = self.seconds.get(kind, 0.0) + time.perf_counter() - start

    def _shares_context(self) -> bool:
        peft = getattr(self.model, "active_peft_config", None)
        return (self.backend == "causal" and isinstance(self.batch_size, int)
                and not (peft is not None and peft.is_prompt_learning))

    def _loglikelihood_tokens(self, requests: list[Request], disable_tqdm: bool = False,
                              override_bs: int | None = None) -> list[tuple[float, bool]]:
        if override_bs is not None or not self._shares_context():
            return super()._loglikelihood_tokens(requests, disable_tqdm=disable_tqdm, override_bs=override_bs)
        fits = [0 < len(ctx) and 0 < len(cont) and len(ctx) + len(cont) <= self.max_length + 1
                for _, ctx, cont in requests]
        out: list[tuple[float, bool] | None] = [None] * len(requests)
        rest = [i for i, ok in enumerate(fits) if not ok]
        if rest:  # HFLM's own path: its left truncation (and its checks on empty parts)
            for i, answer in zip(rest, super()._loglikelihood_tokens([requests[i] for i in rest],
                                                                     disable_tqdm=disable_tqdm), strict=True):
                out[i] = answer
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, ok in enumerate(fits):
            if ok:
                groups.setdefault(tuple(requests[i][1]), []).append(i)
        # longest contexts first, as HFLM orders its batches: little padding, any OOM comes at once
        ordered = sorted(groups.items(), key=lambda kv: (-len(kv[0]), kv[0]))
        for chunk in _chunks(ordered, self.batch_size):
            for i, answer in zip((i for _, idx in chunk for i in idx), self._score(chunk, requests), strict=True):
                out[i] = answer
                if requests[i][0] is not None:
                    self.cache_hook.add_partial("loglikelihood", requests[i][0], answer)
        return out

    def _score(self, chunk: list[tuple[tuple[int, ...], list[int]]], requests: list[Request]):
        """(logprob, is_greedy) for every continuation of the chunk's contexts, in the chunk's order."""
        dev = self.device
        ctx_lens = torch.tensor([len(ctx) for ctx, _ in chunk], device=dev)
        ids, mask = _right_padded([list(ctx) for ctx, _ in chunk], dev)
        row_group = torch.tensor([g for g, (_, idx) in enumerate(chunk) for _ in idx], device=dev)
        conts = [requests[i][2] for _, idx in chunk for i in idx]
        with torch.no_grad(), torch.autocast(device_type=dev.type, dtype=self.mixed_precision_dtype,
                                             enabled=self.mixed_precision_dtype is not None):
            first = self.model(input_ids=ids, attention_mask=mask, position_ids=_positions(mask), use_cache=True)
            last = first.logits[torch.arange(len(chunk), device=dev), ctx_lens - 1]
            heads = F.log_softmax(last, dim=-1, dtype=self.softmax_dtype)[row_group]  # [rows, vocab]
            tails = [c[:-1] for c in conts]
            if max(map(len, tails)):
                cache = first.cache
                cache.reorder_cache(row_group)  # one copy of its context's keys/values per continuation row
                tail_ids, tail_mask = _right_padded(tails, dev)
                positions = ctx_lens[row_group, None] + torch.arange(tail_ids.shape[1], device=dev)
                rest = self.model(input_ids=tail_ids, attention_mask=torch.cat([mask[row_group], tail_mask], dim=1),
                                  position_ids=positions, cache=cache, use_cache=False).logits
                rest = F.log_softmax(rest, dim=-1, dtype=self.softmax_dtype)
        out = []
        for r, cont in enumerate(conts):
            logp = heads[r, None] if len(cont) == 1 else torch.cat([heads[r, None], rest[r, :len(cont) - 1]])
            toks = torch.tensor(cont, device=dev)
            out.append((float(logp.gather(1, toks[:, None]).sum()), bool((logp.argmax(-1) == toks).all())))
        return out


def _chunks(groups: list, rows: int):
    """Consecutive groups holding at most `rows` continuations together (a larger group goes alone)."""
    chunk, n = [], 0
    for group in groups:
        if chunk and n + len(group[1]) > rows:
            yield chunk
            chunk, n = [], 0
        chunk.append(group)
        n += len(group[1])
    if chunk:
        yield chunk


def _right_padded(seqs: list[list[int]], device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.zeros((len(seqs), width), dtype=torch.long, device=device)  # pad id 0: masked, any id would do
    mask = torch.zeros_like(ids)
    for row, s in enumerate(seqs):
        ids[row, :len(s)] = torch.tensor(s, dtype=torch.long)
        mask[row, :len(s)] = 1
    return ids, mask


def _positions(mask: torch.Tensor) -> torch.Tensor:
    return torch.arange(mask.shape[1], device=mask.device).expand(mask.shape[0], -1)
