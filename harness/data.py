"""Training and evaluation examples: prompt formatting, tokenisation, and the budgeted data order.

An instruction example (Alpaca layout: instruction, input, output) becomes the
tokenizer's own chat prompt plus a completion; only completion tokens carry loss.
`budgeted` lays out exactly `tokens` non-padding tokens in a seed-fixed order, so every
strategy of a matrix sees the same tokens in the same order.

    rows = load_split(spec.data, root, "train")
    train = budgeted([encode(tok, r, 256) for r in rows], tokens=100_000, seed=0)
"""

from __future__ import annotations

import random
from pathlib import Path

from harness.config import DataSpec
from harness.evals.formats import FormatError, read_jsonl
from harness.paths import resolve_data

ALPACA_KEYS = ("instruction", "output")
SPLITS = ("train", "validation", "test")


def bos_ids(tok) -> list[int]:
    """The token every sequence starts with (BOS, or EOS for tokenizers that separate documents with it)."""
    bos = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
    return [bos] if bos is not None else []


def chat_prompt(tok, instruction: str, input: str = "") -> str:
    content = f"{instruction}\n\n{input}" if input else instruction
    if tok.chat_template:
        return tok.apply_chat_template([{"role": "user", "content": content}], tokenize=False,
                                       add_generation_prompt=True)
    return f"### Instruction:\n{content}\n\n### Response:\n"  # base models without a chat template


def completion_text(tok, row: dict) -> str:
    """The assistant turn as the chat template renders it, end-of-turn marker included."""
    prompt = chat_prompt(tok, row["instruction"], row.get("input", ""))
    if not tok.chat_template:
        return row["output"] + (tok.eos_token or "")
    content = f"{row['instruction']}\n\n{row['input']}" if row.get("input") else row["instruction"]
    full = tok.apply_chat_template([{"role": "user", "content": content}, {"role": "assistant", "content": row["output"]}],
                                   tokenize=False)
    if not full.startswith(prompt):
        raise ValueError("the chat template does not render the prompt as a prefix of the conversation")
    return full[len(prompt):]


def load_split(spec: DataSpec, root: Path, split: str) -> list[dict]:
    folder = resolve_data(spec.path, root)
    path = folder / f"{split}.jsonl"
    if not path.is_file():
        raise FormatError(f"{path}: missing; a data folder holds {', '.join(s + '.jsonl' for s in SPLITS)}")
    return read_jsonl(path, ALPACA_KEYS)


def encode(tok, row: dict, max_length: int) -> dict[str, list[int]]:
    """input_ids and labels (prompt masked with -100); long prompts lose their left end."""
    prompt = bos_ids(tok) + tok(chat_prompt(tok, row["instruction"], row.get("input", "")),
                             add_special_tokens=False)["input_ids"]
    completion = tok(completion_text(tok, row), add_special_tokens=False)["input_ids"][:max_length]
    prompt = prompt[max(0, len(prompt) + len(completion) - max_length):]
    return {"input_ids": prompt + completion, "labels": [-100] * len(prompt) + completion}


def budgeted(examples: list[dict[str, list[int]]], tokens: int, seed: int) -> list[dict[str, list[int]]]:
    """Examples in a seed-fixed order (reshuffled each pass) holding exactly `tokens` tokens in all.

    The last example is cut short so the total is exact; the runner trains one pass over
    the result, so every strategy consumes the same tokens in the same order.
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
            out.append({k: v[:take] for k, v in ex.items()})
            total += take
            if total == tokens:
                break
    return out
