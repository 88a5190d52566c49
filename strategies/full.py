"""Full fine-tuning: every parameter of the base model trains."""

from __future__ import annotations

from dataclasses import dataclass

from strategies.base import StrategyBase, TrainDefaults, mark_trainable, register_strategy


@dataclass(frozen=True)
class FullParams:
    pass


@register_strategy("full")
class Full(StrategyBase):
    Params = FullParams
    defaults = TrainDefaults(learning_rate=2e-5)  # typical for 0.5B-8B models

    def prepare(self, model, params):
        mark_trainable(model, lambda name: True)
        return model

    def save(self, model, path):
        model.save_pretrained(str(path), safe_serialization=True)

    def load(self, base, path):
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM.from_pretrained(str(path), dtype=base.dtype)
