"""OFT (Qiu et al., 2023) through peft: each targeted linear layer's input is rotated by a learned orthogonal matrix.

The rotation is block-diagonal (blocks of `block_size` x `block_size`), each block the Cayley
transform of a skew-symmetric matrix that starts at zero, so the prepared model starts as the
base model, and the weights' angles to one another (their hyperspherical energy) are kept:
PEFT-Arena (2026) found OFT on the best stability-plasticity front at a comparable parameter
budget. Trainable numbers: in_features * (block_size - 1) / 2 per targeted layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from strategies.base import PeftStrategy, TrainDefaults, register_strategy
from strategies.lora import linear_names


@dataclass(frozen=True)
class OFTParams:
    block_size: int = 32  # peft's default; a layer whose width it does not divide gets the nearest divisor
    target_modules: str | list[str] = "all-linear"  # as LoRA's: "all-linear", "attention", or module names
    coft: bool = False  # constrained OFT: the rotation stays within `eps` of the identity
    extra: dict = field(default_factory=dict)  # any other peft OFTConfig field, passed through

    def __post_init__(self):
        if self.block_size < 2:
            raise ValueError(f"block_size must be >= 2 (a 1x1 rotation is the identity), got {self.block_size}")


@register_strategy("oft")
class OFT(PeftStrategy):
    Params = OFTParams
    defaults = TrainDefaults(learning_rate=1e-3)  # rotations move slower than LoRA's additive updates

    def check(self, model, params):
        from transformers.pytorch_utils import Conv1D

        if any(isinstance(m, Conv1D) for m in model.modules()):  # GPT-2's fused projections
            return "peft's OFT rotates torch.nn.Linear layers only; this model's projections are GPT-2 style Conv1D"
        return None

    def prepare(self, model, params):
        from peft import OFTConfig, get_peft_model

        targets = params.target_modules
        config = OFTConfig(r=0, oft_block_size=params.block_size, coft=params.coft, task_type="CAUSAL_LM",
                           target_modules=linear_names(model, targets) if isinstance(targets, str) else targets,
                           **params.extra)
        return get_peft_model(model, config)
