"""Load a base model and its tokenizer from a zoo name, a local folder or a hub id.

Safe by default: safetensors weights only, and remote code only when the matrix names
`trust_remote_code: true` for that model.

    model, tok = load(ModelSpec(id="tiny-world"))
"""

from __future__ import annotations

from pathlib import Path

import torch

from harness.config import ModelSpec
from harness.paths import resolve_model

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def load(spec: ModelSpec, root: Path | None = None, quantization_config=None):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    where = resolve_model(spec.id, root)
    try:
        tok = AutoTokenizer.from_pretrained(where, trust_remote_code=spec.trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(
            where, dtype=DTYPES[spec.dtype], use_safetensors=True, trust_remote_code=spec.trust_remote_code,
            quantization_config=quantization_config,
        )
    except OSError as e:
        raise OSError(f"cannot load model {spec.id!r} (resolved to {where!r}): not a zoo name, not a local "
                      f"folder, and not reachable as a hub id from here ({str(e).splitlines()[0]})") from None
    if tok.pad_token is None:  # many hub tokenizers ship without one; padding is masked out anyway
        tok.pad_token = tok.eos_token
    return model, tok
