"""Prefix tuning (Li & Liang, 2021) and prompt tuning (Lester et al., 2021) through peft.

Prefix tuning learns key/value vectors for every layer (optionally through an MLP, the
"reparameterisation"); prompt tuning learns input embeddings only. Both leave the base
weights frozen and can be saved as a few kilobytes.
"""

from __future__ import annotations

from dataclasses import dataclass

from strategies.base import TrainDefaults, peft_load, peft_save, register_strategy


@dataclass(frozen=True)
class PrefixParams:
    num_virtual_tokens: int = 16
    projection: bool = False  # reparameterise the prefix through a 2-layer MLP while training
    encoder_hidden_size: int | None = None  # that MLP's width; None means the model's hidden size

    def __post_init__(self):
        if self.num_virtual_tokens < 1:
            raise ValueError(f"num_virtual_tokens must be >= 1, got {self.num_virtual_tokens}")


@dataclass(frozen=True)
class PromptParams:
    num_virtual_tokens: int = 16

    def __post_init__(self):
        if self.num_virtual_tokens < 1:
            raise ValueError(f"num_virtual_tokens must be >= 1, got {self.num_virtual_tokens}")


@register_strategy("prefix")
class Prefix:
    """Prefix tuning through peft: trained key/value prefixes at every layer."""

    Params = PrefixParams
    defaults = TrainDefaults(learning_rate=1e-2)

    def check(self, model, params):
        return None

    def prepare(self, model, params):
        from peft import PrefixTuningConfig, get_peft_model

        config = PrefixTuningConfig(
            task_type="CAUSAL_LM", num_virtual_tokens=params.num_virtual_tokens,
            prefix_projection=params.projection,
            encoder_hidden_size=params.encoder_hidden_size or model.config.hidden_size,
        )
        return get_peft_model(model, config)

    save = staticmethod(peft_save)
    load = staticmethod(peft_load)


@register_strategy("prompt")
class Prompt:
    """Prompt tuning through peft: trained input embeddings of virtual tokens."""

    Params = PromptParams
    defaults = TrainDefaults(learning_rate=3e-2)

    def check(self, model, params):
        return None

    def prepare(self, model, params):
        from peft import PromptTuningConfig, get_peft_model

        return get_peft_model(model, PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=params.num_virtual_tokens))

    save = staticmethod(peft_save)
    load = staticmethod(peft_load)
