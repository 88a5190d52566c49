"""The budgeted training order and the batch collator (padded, or packed without padding).

`budgeted` lays out exactly `tokens` non-padding tokens in a seed-fixed order, so every
strategy of a matrix sees the same tokens in the same order. With packing, each batch is
one row of its examples back to back; position ids restart per example, from which
transformers builds a block-diagonal attention mask, so no example attends to another.

    train = budgeted([encode(tok, ex, 256) for ex in rows], tokens=100_000, seed=0)
    collate, counting = collator(tok, packing=True)
"""

from __future__ import annotations

import random

from harness.config import ConfigError
from harness.data.template import IGNORE


def budgeted(examples: list[dict[str, list[int]]], tokens: int, seed: int) -> list[dict[str, list[int]]]:
    """Examples in a seed-fixed order (reshuffled each pass) holding exactly `tokens` tokens in all.

    The last example is cut short so the total is exact; the runner trains one pass over
    the result, so every strategy consumes the same tokens in the same order. A cut that would
    keep only prompt tokens (labels all IGNORE, as with answer-only loss and a long prompt) keeps
    the example's last tokens instead, which end in its answer: a step made of such a piece alone
    would have no supervised token, a 0/0 loss that the divergence check would take for NaN.
    """
    if not examples:
        raise ValueError("no training examples")
    rng = random.Random(seed)
    out, total = [], 0
    while total < tokens:
        order = list(range(len(examples)))
        rng.shuffle(order)
        for i in order:
            ex = examples[i]
            take = min(len(ex["input_ids"]), tokens - total)
            piece = {k: v[:take] for k, v in ex.items()}
            if _unsupervised(piece) and not _unsupervised(ex):
                piece = {k: v[len(v) - take:] for k, v in ex.items()}
            out.append(piece)
            total += take
            if total == tokens:
                break
    return out


def _unsupervised(ex: dict[str, list[int]]) -> bool:
    return "labels" in ex and all(label == IGNORE for label in ex["labels"])


def collator(tok, packing: bool, model=None):
    """(data collator, Trainer's include_num_input_tokens_seen mode) for padded or packed batches.

    A packed batch has no padding and no attention_mask (a mask would switch off the
    packed-sequence detection), so every token counts ("all"). It also asks for no KV cache:
    transformers builds the per-example mask only when there is none, and a model whose
    config says use_cache=True would otherwise let packed examples attend to each other.
    """
    from transformers import DataCollatorForSeq2Seq, DataCollatorWithFlattening

    if not packing:
        return DataCollatorForSeq2Seq(tok, padding=True, label_pad_token_id=IGNORE), "non_padding"
    if getattr(getattr(model, "active_peft_config", None), "is_prompt_learning", False):
        raise ConfigError("data.packing cannot be combined with prefix/prompt tuning: their virtual tokens travel "
                          "as a KV cache, which turns off the per-example attention mask; set data.packing: false")
    flatten = DataCollatorWithFlattening(return_position_ids=True, separator_id=IGNORE)

    def packed(features):
        return {**flatten(features), "use_cache": False}

    return packed, "all"
