"""Load a base model and its tokenizer from a zoo name, a local folder, a GGUF file or a hub id.

A zoo model that is fetched (harness.catalog) is fetched and converted on first use, and a
`.gguf` file is converted once into a plain folder cached by its hash (harness.convert).
Safe by default: safetensors weights only, and remote code only when the matrix names
`trust_remote_code: true` for that model.

    model, tok = load(ModelSpec(id="tiny-world"))
    folder = prepare(ModelSpec(id="models/my-model.Q8_0.gguf"))   # converted once, then reused
"""

from __future__ import annotations

from pathlib import Path

import torch

from harness.config import ModelSpec
from harness.paths import GGUF, resolve_model

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def prepare(spec: ModelSpec, root: Path | None = None, progress=print) -> str:
    """The folder (or hub id) to load the model from, fetching or converting it first where needed.

    Raises harness.catalog.FetchError when a zoo model cannot be fetched.
    """
    from harness.catalog import ZOO_MODELS

    if spec.id in ZOO_MODELS.names():
        return str(ZOO_MODELS.get(spec.id).ensure(progress, accept_terms=spec.accept_terms))
    local = (root or Path.cwd()) / spec.id
    if local.is_file() and local.suffix == GGUF:
        from harness.convert import cached

        return str(cached(local, progress))
    return resolve_model(spec.id, root)


def load(spec: ModelSpec, root: Path | None = None, quantization_config=None):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    where = prepare(spec, root)
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


def caveat(spec: ModelSpec, root: Path | None = None) -> str | None:
    """What reports must say beside this model's scores: the `caveat` of the provenance.json that a zoo fetch or a
    GGUF conversion wrote beside the model folder (e.g. Qwen's "quantized twice"); None for any other model."""
    import json

    path = Path(resolve_model(spec.id, root)).parent / "provenance.json"
    try:
        return json.loads(path.read_text("utf-8")).get("caveat") or None
    except (OSError, ValueError, AttributeError):  # no provenance (a hub id, a plain folder): nothing to say
        return None


def uses_bf16(flag: bool | None, device: torch.device | None = None) -> bool:
    """train.bf16 / eval.bf16 resolved: None is bf16 on a CUDA device that supports it (the model's `device`
    where given: a model left on the CPU of a CUDA machine computes in float32), never on CPU."""
    if flag is not None:
        return flag
    cuda = torch.cuda.is_available() if device is None else device.type == "cuda"
    return cuda and torch.cuda.is_bf16_supported()


def autocast(model, flag: bool | None):
    """Where the model's forwards run: bf16 autocast on its device when `flag` resolves on (uses_bf16). Outputs
    come out bf16, so whatever sums them (log-softmax, NLL) upcasts to float32 first."""
    device = next(model.parameters()).device
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=uses_bf16(flag, device))


def to_accelerator(model):
    """The model on the first CUDA device when there is one (where evaluation is fast), else as it is."""
    import torch

    return model.to("cuda") if torch.cuda.is_available() else model
