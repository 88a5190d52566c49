"""Full fine-tuning: every parameter of the base model trains."""

from __future__ import annotations

from dataclasses import dataclass

from strategies.base import TrainDefaults, mark_trainable, register_strategy


@dataclass(frozen=True)
class FullParams:
    pass


@register_strategy("full")
class Full:
    Params = FullParams
    defaults = TrainDefaults(learning_rate=1e-4)

    def check(self, model, params):
        return None

    def prepare(self, model, params):
        mark_trainable(model, lambda name: True)
        return model
