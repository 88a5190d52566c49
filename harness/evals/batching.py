"""How scoring and generation batch their rows: sorted by length, and how many rows per forward.

Rows are grouped longest first, so each batch pads only to its own longest row (and the first
batch, the largest, fails early if memory is short); callers write results back by index, so
the order they return is the order they were given. On CPU the batch holds `eval.batch_size`
rows; on CUDA as many as half the free memory holds, from the model's KV-cache and logits size.

    for batch in by_length([len(s) for s in seqs], rows_per_batch(model, 16, tokens=512, scored=512, what="ppl")):
        ids, mask = right_padded([seqs[i] for i in batch], pad=0)
"""

from __future__ import annotations

from functools import cache

import torch

CUDA_SHARE = 0.5  # of the free memory a batch may take: the allocator's fragmentation and the weights' temporaries
MAX_ROWS = 512  # beyond this a bigger batch only adds padding waste
CPU_TOKENS = 1024  # padded tokens per scoring batch on CPU: more rows gain nothing there, padding only costs


def by_length(lengths: list[int], batch_size: int, max_tokens: int | None = None) -> list[list[int]]:
    """Indices into `lengths` in batches of at most `batch_size` rows and `max_tokens` padded tokens (rows x the
    batch's longest; a longer row goes alone), longest first (ties keep their input order)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    for i in order:
        last = batches[-1] if batches else None
        fits = max_tokens is None or (len(last) + 1) * lengths[last[0]] <= max_tokens if last else False
        if last and len(last) < batch_size and fits:
            last.append(i)
        else:
            batches.append([i])
    return batches


def right_padded(seqs: list[list[int]], pad: int, width: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, attention mask) with every row padded on the right, so real tokens keep positions 0..n-1."""
    width = width or max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for j, s in enumerate(seqs):
        ids[j, :len(s)] = torch.tensor(s, dtype=torch.long)
        mask[j, :len(s)] = 1
    return ids, mask


def bytes_per_row(config, dtype_bytes: int, tokens: int, scored: int) -> int:
    """Inference memory of one row: the KV cache and one layer's activations over `tokens` positions, and the
    logits of `scored` positions (in the model's dtype, then float32 twice: the upcast and its log-softmax)."""
    h, v = config.hidden_size, config.vocab_size
    a = config.num_attention_heads
    k = getattr(config, "num_key_value_heads", None) or a
    d = getattr(config, "head_dim", None) or h // a
    i = getattr(config, "intermediate_size", None) or 4 * h
    kv = 2 * config.num_hidden_layers * k * d * dtype_bytes
    activations = (4 * h + 2 * i) * dtype_bytes
    return tokens * (kv + activations) + scored * v * (dtype_bytes + 8)


@cache
def _announce(what: str, rows: int, why: str) -> None:
    print(f"eval: {what} batch size {rows} ({why})", flush=True)  # once per choice: the cell log says what ran


def rows_per_batch(model, batch_size: int, tokens: int, scored: int, what: str) -> int:
    """`batch_size` (eval.batch_size) on CPU; on CUDA the rows of `tokens` positions, `scored` of them with
    logits, that fit in CUDA_SHARE of the free memory (at least 1, at most MAX_ROWS). Prints the choice."""
    device = next(model.parameters()).device
    if device.type != "cuda":
        _announce(what, batch_size, "eval.batch_size")
        return batch_size
    free, _ = torch.cuda.mem_get_info(device)
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    per_row = bytes_per_row(config, next(model.parameters()).element_size(), tokens, scored)
    rows = int(max(1, min(MAX_ROWS, CUDA_SHARE * free // per_row)))
    _announce(what, rows, f"{free / 2**30:.1f} GiB free on {device}, {per_row / 2**20:.1f} MiB per row")
    return rows
