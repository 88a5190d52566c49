"""The perplexity suite: token-level NLL in-domain and on a general corpus; long texts by sliding window.

In-domain is the completion tokens of the held-out (validation) split, given their prompts;
general is every token of a text corpus (JSONL `text` or plain text, e.g. WikiText-2). The
same tokens are scored for every cell of a matrix, so perplexities pair item by item.
Perplexity = exp(sum of token NLLs / token count), over all documents together.

Per-token perplexity depends on the tokenizer (a 152k vocabulary spends fewer, harder tokens on a text than
a 49k one), so each perplexity metric has a bits-per-byte twin `<name>_bpb` = sum NLL / (ln 2 * sum of UTF-8
bytes), which a base-model swap across tokenizers can compare. Its NLL is that of the tokens encoding the
document's own text, its bytes those of exactly that text:
- general text: every scored token; the bytes of the document (less its first token's when no BOS precedes it,
  since that token is not scored). Sliding windows score each token once, and the bytes count once.
- in-domain: the completion tokens that are not special tokens (BOS, EOS, the chat template's end-of-turn
  markers such as `<|im_end|>`: they encode no text, so their NLL is left out); the bytes of the text the kept
  tokens decode to, after the completion's cut at max_length. Template text that is plain text (the newline
  after `<|im_end|>`) counts on both sides of the ratio.

    nll, n = text_nll(model, tok, ["Ada lives in Karsk."])   # per-text sums and token counts
    scores = run(model, tok, cell)   # {"ppl_in_domain": (nll, n), "ppl_in_domain_bpb": BitsPerByte(nll, bytes), ...}
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from harness.data import bos_ids, load_split, scored_pair
from harness.data.native import read_documents, spread
from harness.evals.batching import CPU_TOKENS, by_length, right_padded, rows_per_batch
from harness.evals.items import example_groups, example_ids, item_ids, labels
from harness.evals.lm import DEFAULT_BATCH, encode_pair, encoded_logprob_parts, keeps_logits, pad_id, sum_logprob
from harness.evals.stats import BitsPerByte
from harness.paths import resolve_data


def windows(ids: list[int], max_length: int, stride: int) -> list[tuple[list[int], int]]:
    """(window, targets it scores) for one document: windows advance by `stride` tokens, and each scores
    only the tokens no earlier window did, its last ones (the recipe of transformers' perplexity guide)."""
    out, prev_end = [], 0
    for begin in range(0, len(ids), stride):
        end = min(begin + max_length, len(ids))
        out.append((ids[begin:end], min(end - prev_end, end - begin - 1)))
        prev_end = end
        if end == len(ids):
            break
    return out


@torch.no_grad()
def text_nll(model, tok, texts: list[str], max_length: int = 512, stride: int | None = None,
             batch_size: int = DEFAULT_BATCH) -> tuple[list[float], list[int]]:
    """Sum of token NLLs and token count per text (BOS prepended, every other token scored once).

    Texts longer than `max_length` are scored by windows that advance by `stride` tokens,
    each scoring only its new tokens with at least `max_length - stride` tokens of context
    (transformers' perplexity guide); `stride` must be below `max_length`, or the first
    token of each later window would go unscored. The windows of all texts are batched
    together, longest first, right-padded (real tokens keep their positions; padding is masked).
    """
    device = next(model.parameters()).device
    stride = stride or max_length // 2
    if not 0 < stride < max_length:
        raise ValueError(f"perplexity stride must be at least 1 and below the window ({max_length} tokens), "
                         f"got {stride}")
    docs = [bos_ids(tok, t) + tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    spans = [(d, w, new) for d, ids in enumerate(docs) for w, new in windows(ids, max_length, stride)]
    sums = [0.0] * len(texts)
    rows = rows_per_batch(model, batch_size, max_length, max_length, "perplexity")
    pad = pad_id(tok)
    keep_ok = keeps_logits(model)
    for batch in by_length([len(w) for _, w, _ in spans], rows, CPU_TOKENS if device.type == "cpu" else None):
        ids, mask = right_padded([spans[i][1] for i in batch], pad)
        width = ids.shape[1]
        # a later window scores only its new tokens: the vocabulary projection only for the last `keep` positions
        keep = max(width - len(spans[i][1]) + spans[i][2] + 1 for i in batch) if keep_ok else width
        kwargs = {"logits_to_keep": keep} if keep < width else {}
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device), **kwargs).logits
        logits = logits[:, -keep:]  # drop virtual-token positions (prompt tuning)
        start = width - keep
        for j, i in enumerate(batch):
            d, w, new = spans[i]
            sums[d] -= sum_logprob(logits[j, len(w) - 1 - new - start:len(w) - 1 - start], w[len(w) - new:])
    return sums, [len(ids) - 1 for ids in docs]


def special_ids(tok) -> set[int]:
    """Ids of the tokenizer's special tokens (BOS, EOS, padding, chat markers): tokens that encode no text."""
    added = getattr(tok, "added_tokens_decoder", None) or {}
    return set(tok.all_special_ids) | {i for i, t in added.items() if getattr(t, "special", False)}


def _decoded_bytes(tok, ids: list[int]) -> int:
    return len(tok.decode(ids, clean_up_tokenization_spaces=False).encode("utf-8")) if ids else 0


def span_bytes(tok, prefix: list[int], ids: list[int], special: set[int] | None = None) -> int:
    """UTF-8 bytes of the text that `ids` add after `prefix`, special tokens left out of both: decoded with the
    prefix, so a SentencePiece word's leading space and a character split across byte-level tokens count right."""
    special = special_ids(tok) if special is None else special
    before = [i for i in prefix if i not in special]
    return _decoded_bytes(tok, before + [i for i in ids if i not in special]) - _decoded_bytes(tok, before)


def document_bytes(tok, texts: list[str]) -> list[int]:
    """UTF-8 bytes of each text that text_nll scores: all of it, less the first token's where no BOS precedes it."""
    out = []
    for t in texts:
        n = len(t.encode("utf-8"))
        if not bos_ids(tok, t) and (ids := tok(t, add_special_tokens=False)["input_ids"]):
            n -= _decoded_bytes(tok, ids[:1])
        out.append(max(n, 0))
    return out


def _text_mask(tok, ids: list[int], completion: str, special: set[int]) -> list[bool]:
    """Which completion tokens encode the completion's text: not special tokens, nor the tail of a completion cut
    inside a character (scored_pair's max_length cut decodes its stray bytes to U+FFFD, no text of the document)."""
    mask = [i not in special for i in ids]
    if completion.endswith("\ufffd"):
        end = len(ids)
        while end > 0 and tok.decode(ids[:end], clean_up_tokenization_spaces=False).endswith("\ufffd"):
            end -= 1
            mask[end] = False
    return mask


def completion_scores(model, tok, pairs: list[tuple[str, str]], batch_size: int = DEFAULT_BATCH
                      ) -> tuple[tuple[list[float], list[int]], BitsPerByte]:
    """The in-domain scores of (prompt, completion) pairs: (NLL sums, token counts) and BitsPerByte (NLL of the
    scored completion tokens that encode text, i.e. special tokens left out, and the UTF-8 bytes of that text)."""
    special = special_ids(tok)
    encoded = [encode_pair(tok, p, c) for p, c in pairs]
    masks = [_text_mask(tok, x, c, special) for (_, x), (_, c) in zip(encoded, pairs, strict=True)]
    parts = encoded_logprob_parts(model, encoded, pad_id(tok), batch_size, masks=masks)
    nbytes = [span_bytes(tok, ctx + x[:len(x) - n], [t for t, k in zip(x[len(x) - n:], m[len(x) - n:], strict=True)
                                                     if k], special)
              for (ctx, x), m, (_, _, n) in zip(encoded, masks, parts, strict=True)]
    return ([-t for t, _, _ in parts], [len(x) for _, x in encoded]), BitsPerByte([-k for _, k, _ in parts], nbytes)


def completion_nll(model, tok, pairs: list[tuple[str, str]],
                   batch_size: int = DEFAULT_BATCH) -> tuple[list[float], list[int]]:
    """NLL of each completion given its prompt (the in-domain target tokens)."""
    return completion_scores(model, tok, pairs, batch_size)[0]


def fingerprint(tok) -> dict:
    """What tells two tokenizers apart in a result: {"class", "vocab_size", "sha256" of the sorted token -> id
    table}."""
    vocab = sorted(tok.get_vocab().items())
    return {"class": type(tok).__name__, "vocab_size": len(vocab),
            "sha256": hashlib.sha256(json.dumps(vocab, ensure_ascii=False).encode("utf-8")).hexdigest()}


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
    out = dict(zip(("ppl_in_domain", "ppl_in_domain_bpb"), completion_scores(model, tok, pairs, cell.eval.batch_size),
                   strict=True))
    ids = dict.fromkeys(out, example_ids(rows))
    groups = dict.fromkeys(out, example_groups(rows))
    if cell.eval.general_text:
        docs = spread(read_documents(resolve_data(cell.eval.general_text, root)), cell.eval.limit)
        size, stride = window(model, cell.eval)
        nll, counts = text_nll(model, tok, docs, max_length=size, stride=stride, batch_size=cell.eval.batch_size)
        out["ppl_general"], out["ppl_general_bpb"] = (nll, counts), BitsPerByte(nll, document_bytes(tok, docs))
        ids["ppl_general"] = ids["ppl_general_bpb"] = item_ids(docs)
    return {**out, **labels(ids, groups)}
