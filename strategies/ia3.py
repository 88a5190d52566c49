"""(IA)^3 (Liu et al., 2022) through peft: learned vectors rescale attention keys, values and the MLP's activations.

Every vector starts at one, so the prepared model starts as the base model; it trains the
fewest parameters of the built-in strategies (one number per key/value channel and per MLP
hidden unit), and merges into the weights for free. Which layers: peft's per-architecture
defaults (Llama: k_proj, v_proj and the input of down_proj; GPT-2: c_attn and the input of
mlp.c_proj), or the names given.
"""

from __future__ import annotations

from dataclasses import dataclass

from strategies.base import PeftStrategy, TrainDefaults, register_strategy


@dataclass(frozen=True)
class IA3Params:
    target_modules: list[str] | None = None  # None: peft's defaults for the model's architecture
    feedforward_modules: list[str] | None = None  # of those, the ones scaled at their input

    def __post_init__(self):
        if (self.target_modules is None) != (self.feedforward_modules is None):
            raise ValueError("target_modules and feedforward_modules are given together or not at all")


@register_strategy("ia3")
class IA3(PeftStrategy):
    Params = IA3Params
    defaults = TrainDefaults(learning_rate=3e-3)  # Liu et al. train their vectors at 3e-3

    def check(self, model, params):
        from peft.utils.constants import TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING as DEFAULTS

        kind = getattr(model.config, "model_type", None)
        if params.target_modules is None and kind not in DEFAULTS:
            return (f"peft has no default (IA)^3 layers for model type {kind!r}: "
                    "name target_modules and feedforward_modules")
        return None

    def prepare(self, model, params):
        from peft import IA3Config, get_peft_model

        config = IA3Config(target_modules=params.target_modules, feedforward_modules=params.feedforward_modules,
                           task_type="CAUSAL_LM")
        return get_peft_model(model, config)
