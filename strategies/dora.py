"""DoRA (Liu et al., 2024) through peft: LoRA on the weight's direction, plus a trained magnitude per output channel.

Its own row rather than a LoRA flag, because the benchmarks that rank it (PEFT-Arena, PEFT-Bench)
report it as a method of its own: it trains LoRA's numbers plus one per output channel, and
costs an extra weight-norm per layer at every step. B starts at zero and the magnitude at the
weight's column norms, so the prepared model starts as the base model.
"""

from __future__ import annotations

import dataclasses

from strategies.base import PeftStrategy, TrainDefaults, register_strategy
from strategies.lora import LoRAParams, lora_config, lora_update


@dataclasses.dataclass(frozen=True)
class DoRAParams(LoRAParams):
    use_dora: bool = True


@register_strategy("dora")
class DoRA(PeftStrategy):
    Params = DoRAParams
    defaults = TrainDefaults(learning_rate=2e-4)  # LoRA's; Liu et al. use LoRA's settings

    interpolated = staticmethod(lora_update)  # harness.snapshots.blend

    def check(self, model, params):
        if not params.use_dora:
            return "dora with use_dora: false is LoRA; use the lora strategy"
        return None

    def prepare(self, model, params):
        from peft import get_peft_model

        return get_peft_model(model, lora_config(model, params))
