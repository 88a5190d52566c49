"""Training throughput of the harness's train() over a plain transformers.Trainer script, side by side.

Same model (the shipped tiny-world model), same examples in the same order, same token
budget, same batch size and learning rate; runs alternate harness/plain so machine noise
hits both. Each timing covers building the Trainer and training (model loading excluded).

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/train_overhead.py [--tokens 20000] [--repeats 3] [--harness-bf16]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments

from harness.config import DataSpec, ModelSpec, TrainSpec
from harness.data import budgeted, encode, load_split
from harness.models import load
from harness.paths import ZOO
from harness.train import train

BATCH, LR = 8, 3e-4


def plain_trainer(model, tok, examples) -> tuple[int, float]:
    """What a user would write by hand: Trainer, a seq2seq collator, max_steps for one pass."""
    steps = -(-len(examples) // BATCH)
    args = TrainingArguments(output_dir=tempfile.mkdtemp(), per_device_train_batch_size=BATCH, max_steps=steps,
                             learning_rate=LR, use_cpu=not torch.cuda.is_available(), save_strategy="no",
                             report_to="none", logging_steps=max(1, steps // 25), remove_unused_columns=False,
                             disable_tqdm=True, seed=0, data_seed=0,
                             bf16=torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    start = time.perf_counter()
    Trainer(model=model, args=args, train_dataset=examples, processing_class=tok,
            data_collator=DataCollatorForSeq2Seq(tok, padding=True, label_pad_token_id=-100)).train()
    return sum(len(e["input_ids"]) for e in examples), time.perf_counter() - start


def harness_train(model, tok, examples, tokens, bf16: bool | None) -> tuple[int, float]:
    start = time.perf_counter()
    usage = train(model, tok, examples, TrainSpec(batch_size=BATCH, learning_rate=LR, bf16=bf16), {"tokens": tokens},
                  seed=0)
    return usage["tokens"], time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=20_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--harness-bf16", action="store_true",
                    help="train the harness side with bf16 autocast (train.bf16: true); the plain script stays as is")
    args = ap.parse_args()
    _, tok = load(ModelSpec(id="tiny-world"))
    rows = load_split(DataSpec(path="zoo:tiny-world/record"), ZOO, "train")
    examples = budgeted([encode(tok, r, 256) for r in rows], args.tokens, seed=0)
    rates = {"harness": [], "plain Trainer": []}
    for i in range(args.repeats):
        for name in (("harness", "plain Trainer") if i % 2 == 0 else ("plain Trainer", "harness")):
            torch.manual_seed(0)
            model, _ = load(ModelSpec(id="tiny-world"))
            tokens, seconds = (harness_train(model, tok, examples, args.tokens, args.harness_bf16 or None)
                               if name == "harness" else plain_trainer(model, tok, examples))
            rates[name].append(tokens / seconds)
            print(f"  run {i + 1} {name:<14} {tokens:,} tokens in {seconds:.2f} s = {tokens / seconds:,.0f} tok/s")
    h, p = statistics.median(rates["harness"]), statistics.median(rates["plain Trainer"])
    print(f"median tok/s: harness {h:,.0f}, plain Trainer {p:,.0f}; harness / plain = {h / p:.3f}x "
          f"({args.repeats} interleaved runs each, {args.tokens:,} tokens, batch {BATCH}, "
          f"harness bf16 {'on' if args.harness_bf16 else 'auto'}, {torch.get_num_threads()} threads, "
          f"{'cuda' if torch.cuda.is_available() else 'cpu'})")


if __name__ == "__main__":
    main()
