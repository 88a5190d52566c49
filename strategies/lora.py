"""LoRA (Hu et al., 2021) through peft: trainable low-rank updates B·A beside frozen linear layers.

B starts at zero, so the prepared model computes exactly what the base model does.

The scaling convention is a parameter, and the matrix can sweep it, because it decides how the
update grows with the rank at a fixed learning rate: the update is (alpha / r)·B·A, or
(alpha / sqrt(r))·B·A with `use_rslora` (Kalajdzievski, 2023, rsLoRA).
- `alpha` unset: alpha = 2r (alpha / r = 2 at every rank, the common choice);
- `alpha: 16`: alpha fixed, so the scale 16 / r shrinks as the rank grows (the original paper's setup);
- `use_rslora: true`: alpha / sqrt(r), which keeps the update's size stable across ranks under Adam.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from torch import nn

from strategies.base import PeftStrategy, TrainDefaults, register_strategy

ATTENTION_HINTS = ("attn", "attention")


def linear_names(model: nn.Module, where: str) -> str | list[str]:
    """peft target_modules for "all-linear", "attention" (every linear inside attention blocks) or a list."""
    if where == "all-linear":
        return where
    if where != "attention":
        raise ValueError(f"target_modules must be 'all-linear', 'attention' or a list of names, got {where!r}")
    names = [n for n, m in model.named_modules()
             if type(m).__name__ in ("Linear", "Conv1D", "Linear4bit", "Linear8bitLt")
             and any(h in n.rsplit(".", 1)[0].split(".")[-1] for h in ATTENTION_HINTS)]
    if not names:
        raise ValueError("no linear layers inside attention blocks found")
    return "^(" + "|".join(re.escape(n) for n in names) + ")$"  # peft full-matches a string as a regex


@dataclass(frozen=True)
class LoRAParams:
    r: int = 8  # rank of the update; the matrix sweeps it (e.g. r: [4, 16, 64])
    alpha: float | None = None  # scaling numerator; None means 2 * r, the common choice
    dropout: float = 0.0
    target_modules: str | list[str] = "all-linear"  # "all-linear", "attention", or module names
    use_rslora: bool = False  # scale by alpha / sqrt(r) instead of alpha / r
    use_dora: bool = False  # weight-decomposed LoRA
    extra: dict = field(default_factory=dict)  # any other peft LoraConfig field, passed through

    def __post_init__(self):
        if self.r < 1:
            raise ValueError(f"r (LoRA rank) must be >= 1, got {self.r}")
        if not 0 <= self.dropout <= 1:
            raise ValueError(f"dropout is a probability, in [0, 1]; got {self.dropout}")


def lora_update(name: str) -> bool:
    """The parameters whose blend toward their start scales the update B·A by a: B (from zero) and DoRA's magnitude;
    A keeps its trained value, since scaling both would scale the update by a²."""
    return "lora_B" in name or "lora_magnitude_vector" in name


def lora_config(model: nn.Module, params: LoRAParams):
    from peft import LoraConfig

    targets = params.target_modules
    return LoraConfig(
        r=params.r, lora_alpha=params.alpha or 2 * params.r, lora_dropout=params.dropout,
        target_modules=linear_names(model, targets) if isinstance(targets, str) else targets,
        use_rslora=params.use_rslora, use_dora=params.use_dora, task_type="CAUSAL_LM", **params.extra,
    )


@register_strategy("lora")
class LoRA(PeftStrategy):
    Params = LoRAParams
    defaults = TrainDefaults(learning_rate=2e-4)  # the QLoRA paper's value for 7B-13B models

    interpolated = staticmethod(lora_update)  # harness.snapshots.blend

    def prepare(self, model, params):
        from peft import get_peft_model

        return get_peft_model(model, lora_config(model, params))
