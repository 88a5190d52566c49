"""Eval primitives side by side: the one-at-a-time / input-order implementations against the batched ones.

Per primitive, in one process on one model: perplexity of documents (one document and window at a
time vs all windows batched longest first), greedy generation (batches in input order, run to
max_new_tokens vs length-sorted batches that stop once every row holds a stop string) and
multiple-choice scoring (every option a whole sequence vs the question once, its KV cache shared by
the options). Each side runs `--repeats` times; the medians and their ratio (old / new: above 1 means
the new way is faster) are printed, and the outputs must agree: NLL within 1e-5 relative, generated
text identical, MC log-likelihoods within 1e-4.

The `old_*` functions are the harness's implementations before issue 12, kept here only as the
reference (tests/test_eval_speed.py checks the new code against them too).

    OMP_NUM_THREADS=1 python benchmarks/eval_speed.py --docs 200 --prompts 64 --items 100
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parent.parent
WORLD = REPO / "harness" / "zoo" / "tiny-world"
sys.path.insert(0, str(REPO))  # run from a checkout: `python benchmarks/eval_speed.py`

from harness.data import bos_ids  # noqa: E402
from harness.evals.lm import encode_pair  # noqa: E402


@torch.no_grad()
def old_text_nll(model, tok, texts: list[str], max_length: int = 512,
                 stride: int | None = None) -> tuple[list[float], list[int]]:
    """Per-text NLL sums and token counts, one document and one window at a time."""
    device = next(model.parameters()).device
    stride = stride or max_length // 2
    sums, counts = [], []
    for text in texts:
        ids = bos_ids(tok, text) + tok(text, add_special_tokens=False)["input_ids"]
        total, prev_end = 0.0, 0
        for begin in range(0, len(ids), stride):
            end = min(begin + max_length, len(ids))
            window = torch.tensor([ids[begin:end]], device=device)
            logits = model(input_ids=window).logits[0, -window.shape[1]:]
            logp = F.log_softmax(logits[:-1].float(), dim=-1)
            token_lp = logp.gather(-1, window[0, 1:, None])[:, 0]
            new = min(end - prev_end, end - begin - 1)
            total -= token_lp[len(token_lp) - new:].sum().item()
            prev_end = end
            if end == len(ids):
                break
        sums.append(total)
        counts.append(len(ids) - 1)
    return sums, counts


@torch.no_grad()
def old_continuation_logprobs(model, tok, pairs: list[tuple[str, str]], batch_size: int = 32,
                              max_length: int | None = None) -> list[float]:
    """Sum of log P(continuation | context) per pair: whole sequences, batched in input order."""
    max_length = max_length or getattr(model.config, "max_position_embeddings", 2048)
    device = next(model.parameters()).device
    encoded = [encode_pair(tok, c, x) for c, x in pairs]
    out: list[float] = []
    for i in range(0, len(encoded), batch_size):
        batch = encoded[i:i + batch_size]
        seqs = [(c + x)[-max_length:] for c, x in batch]
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), tok.pad_token_id or 0, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for j, s in enumerate(seqs):
            ids[j, : len(s)] = torch.tensor(s)
            mask[j, : len(s)] = 1
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
        logits = logits[:, -width:]
        logp = F.log_softmax(logits[:, :-1], dim=-1)
        for j, ((_, cont), s) in enumerate(zip(batch, seqs)):
            n = len(cont)
            if n == 0:
                out.append(0.0)
                continue
            targets = torch.tensor(s[-n:], device=device)
            out.append(logp[j, len(s) - n - 1: len(s) - 1].gather(-1, targets[:, None]).sum().item())
    return out


@torch.no_grad()
def old_greedy(model, tok, prompts: list[str], max_new_tokens: int = 64, batch_size: int = 16,
               stop: list[str] | None = None) -> list[str]:
    """Greedy completions in input-order batches, each run to max_new_tokens (or EOS), cut at `stop` after."""
    device = next(model.parameters()).device
    stop = stop or []
    eos_ids = [i for i in {tok.eos_token_id, tok.convert_tokens_to_ids("<|end|>")} if isinstance(i, int) and i >= 0]
    texts = []
    for i in range(0, len(prompts), batch_size):
        encoded = [bos_ids(tok, p) + tok(p, add_special_tokens=False)["input_ids"] for p in prompts[i:i + batch_size]]
        width = max(len(e) for e in encoded)
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0
        ids = torch.tensor([[pad] * (width - len(e)) + e for e in encoded])
        mask = torch.tensor([[0] * (width - len(e)) + [1] * len(e) for e in encoded])
        gen = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), do_sample=False,
                             max_new_tokens=max_new_tokens, eos_token_id=eos_ids, pad_token_id=pad)
        for row in gen[:, width:]:
            text = tok.decode(row, skip_special_tokens=True)
            for s in stop:
                text = text.split(s)[0]
            texts.append(text.strip())
    return texts


def old_group_logprobs(model, tok, groups: list[list[tuple[str, str]]]) -> list[list[float]]:
    """Every (context, option) pair scored as its own sequence, as score_mc did."""
    flat = old_continuation_logprobs(model, tok, [p for g in groups for p in g])
    out, k = [], 0
    for g in groups:
        out.append(flat[k:k + len(g)])
        k += len(g)
    return out


def median_seconds(fn, repeats: int):
    """(median wall seconds, the last result) over `repeats` calls."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def workloads(tok, docs: int, prompts: int, items: int) -> dict:
    """The tiny world's general corpus, GSM8K prompts and cloze MMLU requests, cut to the sizes asked for."""
    from harness.data.native import read_documents, read_gsm8k, read_mmlu
    from harness.evals.choice import requests

    data = WORLD / "data"
    texts = read_documents(data / "general" / "test.jsonl")[:docs]
    gsm = [f"Question: {g.prompt}\nAnswer:" for g in read_gsm8k(data / "gsm8k" / "test.jsonl")[:prompts]]
    mc = [requests(it, "en", "cloze", it.subject.replace("_", " ")) for it in read_mmlu(data / "mmlu", "test")[:items]]
    return {"texts": texts, "prompts": gsm, "groups": mc}


def close(a: list[float], b: list[float], rel: float = 0.0, abs_: float = 0.0) -> bool:
    return len(a) == len(b) and all(abs(x - y) <= max(rel * abs(x), abs_) for x, y in zip(a, b))


def main(argv: list[str] | None = None) -> int:
    from harness.config import ModelSpec
    from harness.evals.lm import greedy, shared_context_logprobs
    from harness.evals.perplexity import text_nll
    from harness.models import load

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=200, help="general-corpus documents scored for perplexity")
    ap.add_argument("--prompts", type=int, default=64, help="GSM8K prompts generated for")
    ap.add_argument("--items", type=int, default=100, help="MMLU items scored in the cloze formulation")
    ap.add_argument("--window", type=int, default=64, help="perplexity window (tokens); stride is half of it")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)

    model, tok = load(ModelSpec(id=str(WORLD / "model")))
    model.eval()
    w = workloads(tok, args.docs, args.prompts, args.items)
    stop = ["\n\n", "Question:"]
    rows, ok = [], True
    sides = {
        "perplexity": (lambda: old_text_nll(model, tok, w["texts"], args.window)[0],
                       lambda: text_nll(model, tok, w["texts"], args.window)[0],
                       lambda a, b: close(a, b, rel=1e-5)),
        "generation": (lambda: old_greedy(model, tok, w["prompts"], args.max_new_tokens, stop=stop),
                       lambda: greedy(model, tok, w["prompts"], args.max_new_tokens, stop=stop),
                       lambda a, b: a == b),
        "mc choice": (lambda: [x for g in old_group_logprobs(model, tok, w["groups"]) for x in g],
                      lambda: [x for g in shared_context_logprobs(model, tok, w["groups"]) for x in g],
                      lambda a, b: close(a, b, abs_=1e-4)),
    }
    for name, (old, new, same) in sides.items():
        t_old, r_old = median_seconds(old, args.repeats)
        t_new, r_new = median_seconds(new, args.repeats)
        equal = same(r_old, r_new)
        ok &= equal
        rows.append(f"{name:<11} old {t_old:8.3f}s  new {t_new:8.3f}s  ratio {t_old / t_new:5.2f}x  "
                    f"outputs {'equal' if equal else 'DIFFER'} ({len(r_new)} items)")
    print("\n".join(rows))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
