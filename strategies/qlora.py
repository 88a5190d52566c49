"""QLoRA (Dettmers et al., 2023): LoRA on a base model quantised to 4-bit NF4 (or 8-bit) by bitsandbytes.

The base is loaded quantised (`load_kwargs`), made trainable-ready by peft's
prepare_model_for_kbit_training, then wrapped with LoRA exactly as the lora strategy does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from strategies.base import PeftStrategy, TrainDefaults, register_strategy
from strategies.lora import LoRAParams, lora_config, lora_update


@dataclass(frozen=True)
class Quantisation:
    """What QLoRA adds to LoRA's parameters: how bitsandbytes quantises the base model."""

    bits: Literal[4, 8] = 4
    quant_type: Literal["nf4", "fp4"] = "nf4"
    double_quant: bool = True
    compute_dtype: Literal["float32", "bfloat16", "float16"] = "float32"


@dataclass(frozen=True)
class QLoRAParams(LoRAParams, Quantisation):
    """LoRA's parameters (and their checks) plus the quantisation.

    Quantisation is the second base on purpose: a dataclass's fields follow its bases from the last to the first,
    so bits .. compute_dtype still come before r .. extra, the order of a qlora cell's params in results and in
    `harness strategies` from before QLoRAParams inherited them."""


def bitsandbytes_problem() -> str | None:
    """Why bitsandbytes cannot quantise here, or None when it can."""
    try:
        import bitsandbytes  # noqa: F401
    except Exception as e:  # ImportError, or a broken native library
        return f"not applicable: bitsandbytes is unavailable ({type(e).__name__}: {e})"
    if not torch.cuda.is_available():
        from importlib.metadata import version

        from packaging.version import Version

        if Version(version("bitsandbytes")) < Version("0.45"):
            return "not applicable: this bitsandbytes has no CPU backend (0.45 or newer has one)"
    return None


@register_strategy("qlora")
class QLoRA(PeftStrategy):
    Params = QLoRAParams
    defaults = TrainDefaults(learning_rate=2e-4)  # as in the QLoRA paper

    def load_kwargs(self, params) -> dict:
        from transformers import BitsAndBytesConfig

        if bitsandbytes_problem():
            return {}  # load unquantised; check() then reports why this cell does not apply

        dtype = getattr(torch, params.compute_dtype)
        if params.bits == 8:
            return {"quantization_config": BitsAndBytesConfig(load_in_8bit=True)}
        return {"quantization_config": BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type=params.quant_type, bnb_4bit_use_double_quant=params.double_quant,
            bnb_4bit_compute_dtype=dtype)}

    interpolated = staticmethod(lora_update)  # harness.snapshots.blend

    def check(self, model, params):
        if problem := bitsandbytes_problem():
            return problem
        if not getattr(model, "is_quantized", False):
            return "not applicable: the base model was not loaded quantised"
        return None

    def prepare(self, model, params):
        from peft import get_peft_model, prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
        return get_peft_model(model, lora_config(model, params))
