"""LayerNorm tuning (Zhao et al., 2024) through peft's LNTuningConfig: only the normalization layers train.

peft trains a copy of every targeted norm layer (weight, and bias where the norm has one) and
keeps the original beside it, so the prepared model starts as the base model and the saved
artifact is the norms alone. Targets: every module whose class is a norm (LayerNorm, RMSNorm),
so the same strategy covers Llama, Qwen2 and GPT-2 without a per-architecture list.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from torch import nn

from strategies.base import PeftStrategy, TrainDefaults, register_strategy


def norm_names(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if n and type(m).__name__.endswith("Norm")]


@dataclass(frozen=True)
class LNTuningParams:
    target_modules: list[str] | None = None  # None: every norm layer


@register_strategy("ln_tuning")
class LNTuning(PeftStrategy):
    Params = LNTuningParams
    defaults = TrainDefaults(learning_rate=1e-3)

    def check(self, model, params):
        if params.target_modules is None and not norm_names(model):
            return "the model has no normalization layers (no module class ending in 'Norm') to tune"
        return None

    def prepare(self, model, params):
        from peft import LNTuningConfig, get_peft_model

        names = params.target_modules or norm_names(model)
        pattern = "^(" + "|".join(re.escape(n) for n in names) + ")$"  # peft full-matches a string as a regex
        return get_peft_model(model, LNTuningConfig(target_modules=pattern, task_type="CAUSAL_LM"))
