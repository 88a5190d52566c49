"""LoRA (Hu et al., 2021) through peft: low-rank updates on the chosen linear layers."""

from __future__ import annotations

from dataclasses import dataclass, field

from strategies.base import TrainDefaults, register_strategy


@dataclass(frozen=True)
class LoRAParams:
    r: int = 8  # rank of the update; the matrix sweeps it (e.g. r: [4, 16, 64])
    alpha: float | None = None  # scaling numerator; None means 2 * r, the common choice
    dropout: float = 0.0
    target_modules: str | list[str] = "all-linear"  # peft's shorthand for every linear layer but the head
    use_rslora: bool = False
    use_dora: bool = False
    extra: dict = field(default_factory=dict)  # any other peft LoraConfig field, passed through


@register_strategy("lora")
class LoRA:
    Params = LoRAParams
    defaults = TrainDefaults(learning_rate=1e-3)

    def check(self, model, params):
        if params.r < 1:
            return f"LoRA rank must be >= 1, got {params.r}"
        return None

    def prepare(self, model, params):
        from peft import LoraConfig, get_peft_model

        config = LoraConfig(
            r=params.r, lora_alpha=params.alpha or 2 * params.r, lora_dropout=params.dropout,
            target_modules=params.target_modules, use_rslora=params.use_rslora, use_dora=params.use_dora,
            task_type="CAUSAL_LM", **params.extra,
        )
        return get_peft_model(model, config)
