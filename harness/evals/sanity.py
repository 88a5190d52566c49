"""Sanity checks recorded in every cell: which weights were evaluated, and that training reached them.

The field's commonest silent failure is an adapter dropped at evaluation: the leaderboard
then scores the base model under a strategy's name. So each trained cell compares its
evaluated model's logits on a fixed probe with the base model's, and a cell whose logits
equal the base's carries a warning. The base logits come from:

- peft models (LoRA, QLoRA, prefix, prompt): `model.disable_adapter()` after training, the
  base computed by the very model that was evaluated;
- other strategies (full, BitFit, bottleneck adapter change or wrap the base weights in
  place): `base_logits` taken right after loading, before `prepare`. A quantised base is
  never run before training (an eval-mode forward of a bitsandbytes 4-bit model repacks
  its weights and breaks the training that follows); QLoRA is a peft model anyway.

The fingerprint (sha256 over the base model's id and dtype and every trainable tensor)
names the evaluated weights; any cache of model outputs must be keyed by it.

    reference = base_logits(model, tok)              # before strategy.prepare
    result["sanity"] = check(model, tok, spec, trained=True, reference=reference)
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
    texts = list(PROBE)
    if tok.chat_template:
        texts.append(tok.apply_chat_template([{"role": "user", "content": PROBE[0]}], tokenize=False,
                                             add_generation_prompt=True))
    return texts


@torch.no_grad()
def probe_logits(model, tok) -> torch.Tensor:
    """The model's logits on the probe texts, one after another (virtual-token positions dropped)."""
    device = next(model.parameters()).device
    out = []
    for text in _probe_chats(tok):
        ids = torch.tensor([bos_ids(tok, text) + tok(text, add_special_tokens=False)["input_ids"]], device=device)
        out.append(model(input_ids=ids).logits[0, -ids.shape[1]:].float().cpu())
    return torch.cat(out)


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


def check(model, tok, model_spec, trained: bool, reference: torch.Tensor | None) -> dict:
    """Fingerprint, and for a trained model the largest logit change against the base (`logits_differ`)."""
    out: dict = {"fingerprint": fingerprint(model, model_spec)}
    if not trained:
        return out
    model.eval()
    evaluated = probe_logits(model, tok)
    if _is_peft(model):
        with model.disable_adapter():
            base = probe_logits(model, tok)
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
    if diff <= TOLERANCE:
        out["warning"] = (f"sanity: the evaluated model's logits equal the base model's (max abs diff {diff:.2e}); "
                          "the trained weights or adapter were not applied, so these scores are the base model's")
    return out
