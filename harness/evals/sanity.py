"""Sanity checks recorded in every cell: which weights were evaluated, and that training reached them.

The field's commonest silent failure is an adapter dropped at evaluation: the leaderboard
then scores the base model under a strategy's name. So each trained cell compares its
evaluated model's logits on a fixed probe with the base model's, and a cell whose logits
equal the base's carries a warning. Generated metrics (task, safety, GSM8K) go through
`generate`, a different code path (the KV cache, peft's input preparation), which can drop a
prefix while the forward pass keeps it (transformers 5.24 with peft 0.21.2 did). So every cell
also greedily generates a few tokens per probe and checks them against its own forward pass:
each generated token must be the forward pass's best next token. A cell where it is not
fails (its generated scores would not be this model's), and a trained cell whose generations
equal the base model's carries a warning. The base logits and generations come from:

- peft models (LoRA, QLoRA, prefix, prompt): `model.disable_adapter()` after training, the
  base computed by the very model that was evaluated;
- other strategies (full, BitFit, bottleneck adapter change or wrap the base weights in
  place): `base_logits` taken right after loading, before `prepare`. A quantised base is
  never run before training (an eval-mode forward of a bitsandbytes 4-bit model repacks
  its weights and breaks the training that follows); QLoRA is a peft model anyway.

The fingerprint (sha256 over the base model's id and dtype and every trainable tensor)
names the evaluated weights; any cache of model outputs must be keyed by it.

    reference, generations = base_logits(model, tok), base_generations(model, tok)   # before strategy.prepare
    result["sanity"] = check(model, tok, spec, trained=True, reference=reference, reference_generations=generations)
"""

from __future__ import annotations

import hashlib

import torch

from harness.data import bos_ids

PROBE = (
    "Ada Tolven lives in Rita and works as a baker.",
    "米拉住在卡尔斯克，她是一名老师。",
    "Question: What is 12 plus 30?\nAnswer:",
)
TOLERANCE = 1e-6  # a dropped adapter reproduces the base logits exactly; a trained one moves them far more
GEN_TOKENS = 8  # greedy tokens generated per probe
GEN_TOLERANCE = 0.05  # logit gap allowed between generate's token and forward's best (cached vs uncached rounding)


def fingerprint(model, model_spec) -> str:
    """sha256 of the base model's id and dtype plus the names and bytes of all trainable tensors."""
    h = hashlib.sha256(f"{model_spec.id}|{model_spec.dtype}".encode())
    for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
        if p.requires_grad:
            t = p.detach().cpu().contiguous()
            h.update(f"|{name}|{t.dtype}|{tuple(t.shape)}|".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _probe_chats(tok) -> list[str]:
    """The probe texts, and the first as a user prompt the way the suites render one (template `auto`: the chat
    template where the tokenizer has one, else alpaca's), so the prompted path is probed for base models too."""
    from harness.data.template import user_prompt

    return [*PROBE, user_prompt(tok, PROBE[0])]


@torch.no_grad()
def probe_logits(model, tok) -> torch.Tensor:
    """The model's logits on the probe texts, one after another (virtual-token positions dropped)."""
    device = next(model.parameters()).device
    out = []
    for text in _probe_chats(tok):
        ids = torch.tensor([bos_ids(tok, text) + tok(text, add_special_tokens=False)["input_ids"]], device=device)
        out.append(model(input_ids=ids).logits[0, -ids.shape[1]:].float().cpu())
    return torch.cat(out)


@torch.no_grad()
def probe_generations(model, tok) -> list[list[int]]:
    """Greedy token ids `model.generate` returns for each probe text, one at a time (no padding)."""
    device = next(model.parameters()).device
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    was_training = model.training
    model.eval()
    out = []
    try:
        for text in _probe_chats(tok):
            ids = torch.tensor([bos_ids(tok) + tok(text, add_special_tokens=False)["input_ids"]], device=device)
            gen = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                 max_new_tokens=GEN_TOKENS, pad_token_id=pad)
            out.append(gen[0, ids.shape[1]:].tolist())
    finally:
        model.train(was_training)
    return out


@torch.no_grad()
def forward_gap(model, tok, generations: list[list[int]]) -> float:
    """How far, in logits, generate's tokens fall below the forward pass's best next token (0: none)."""
    device = next(model.parameters()).device
    gap = 0.0
    for text, new in zip(_probe_chats(tok), generations):
        if not new:
            continue
        prompt = bos_ids(tok) + tok(text, add_special_tokens=False)["input_ids"]
        seq = torch.tensor([prompt + new], device=device)
        logits = model(input_ids=seq, attention_mask=torch.ones_like(seq)).logits[0, -seq.shape[1]:].float()
        steps = logits[len(prompt) - 1: len(prompt) - 1 + len(new)]
        chosen = steps.gather(-1, torch.tensor(new, device=device)[:, None])[:, 0]
        gap = max(gap, (steps.max(-1).values - chosen).max().item())
    return gap


def base_generations(model, tok) -> list[list[int]] | None:
    """The loaded base model's probe generations, or None for a quantised model (see the module docstring)."""
    return None if getattr(model, "is_quantized", False) else probe_generations(model, tok)


def base_logits(model, tok) -> torch.Tensor | None:
    """The loaded base model's probe logits, or None for a quantised model (see the module docstring)."""
    if getattr(model, "is_quantized", False):
        return None
    was_training = model.training
    model.eval()
    try:
        return probe_logits(model, tok)
    finally:
        model.train(was_training)


def _is_peft(model) -> bool:
    return hasattr(model, "disable_adapter") and hasattr(model, "peft_config")


def check(model, tok, model_spec, trained: bool, reference: torch.Tensor | None,
          reference_generations: list[list[int]] | None = None) -> dict:
    """Fingerprint; the generation path against the forward pass (`generate_agrees`, with `failure` when it
    does not); for a trained model the largest logit change against the base (`logits_differ`) and whether
    `generate` returns anything the base model does not (`generation_differs`)."""
    out: dict = {"fingerprint": fingerprint(model, model_spec)}
    model.eval()
    generations = probe_generations(model, tok)
    gap = forward_gap(model, tok, generations)
    out.update(generate_forward_gap=round(gap, 6), generate_agrees=gap <= GEN_TOLERANCE)
    if gap > GEN_TOLERANCE:
        out["failure"] = (f"sanity: generate() does not follow the model's own forward pass (a generated token sits "
                          f"{gap:.2f} logits below the best); generated scores (task, safety, GSM8K) would not be "
                          "this model's, e.g. a prefix or adapter that generate drops under these transformers/peft "
                          "versions")
    if not trained:
        return out
    evaluated = probe_logits(model, tok)
    if _is_peft(model):
        with model.disable_adapter():
            base = probe_logits(model, tok)
            reference_generations = probe_generations(model, tok)
        out["logits_reference"] = "peft disable_adapter() after training"
        if reference is not None:  # the frozen base must still compute what it computed before training
            out["base_unchanged_max_abs_diff"] = (base - reference).abs().max().item()
    elif reference is not None:
        base = reference
        out["logits_reference"] = "base model before prepare"
    else:
        out["logits_reference"] = "none: a quantised base that is not a peft model has no reference here"
        return out
    diff = (evaluated - base).abs().max().item()
    out.update(logits_max_abs_diff=diff, logits_differ=diff > TOLERANCE)
    warnings = []
    if diff <= TOLERANCE:
        warnings.append(f"sanity: the evaluated model's logits equal the base model's (max abs diff {diff:.2e}); "
                        "the trained weights or adapter were not applied, so these scores are the base model's")
    if reference_generations is not None:
        out["generation_differs"] = generations != reference_generations
        if not out["generation_differs"]:
            warnings.append(f"sanity: generate() returns exactly the base model's {GEN_TOKENS} tokens on every probe; "
                            "the trained weights may not reach the generation path")
    if warnings:
        out["warning"] = "; ".join(warnings)
    return out
