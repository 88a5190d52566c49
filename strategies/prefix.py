"""Prefix tuning (Li & Liang, 2021) and prompt tuning (Lester et al., 2021) through peft.

Prefix tuning learns key/value vectors for every layer (optionally through an MLP, the
"reparameterisation"); prompt tuning learns input embeddings only. Both leave the base
weights frozen and can be saved as a few kilobytes.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass

from strategies.base import PeftStrategy, TrainDefaults, register_strategy


def generation_fix(model):
    """Make peft's prompt-learning `generate` see the KV cache under transformers' new `cache` name.

    transformers 5.24 renamed `past_key_values` to `cache` in `prepare_inputs_for_generation`;
    peft 0.21.2 still reads and writes `past_key_values` there. Its prefix was then handed to the
    model under the old name, which the model ignores when `cache` is also set, so prefix tuning
    generated exactly like the base model (and prompt tuning re-inserted its virtual tokens at every
    step), while the forward pass, and so every loss and perplexity, was right. The fix renames the
    key on the way into peft's code and back out. Older transformers need nothing; the generation
    check in harness/evals/sanity.py fails a cell whose `generate` still disagrees with its forward pass.
    """
    from transformers import GenerationMixin

    if "cache" not in inspect.signature(GenerationMixin.prepare_inputs_for_generation).parameters:
        return model
    base_prepare, peft_prepare = model.base_model_prepare_inputs_for_generation, model.prepare_inputs_for_generation

    @functools.wraps(base_prepare)
    def base_prepare_for_peft(*args, **kwargs):  # `args`/`kwargs`: the names transformers' kwargs check reads
        inputs = base_prepare(*args, **kwargs)
        if "cache" in inputs:
            inputs["past_key_values"] = inputs.pop("cache")
        return inputs

    @functools.wraps(peft_prepare)
    def prepare(*args, **kwargs):
        model.base_model_prepare_inputs_for_generation = base_prepare_for_peft  # only inside peft's own step,
        try:  # so the base model's generate (peft restores it after each call) stays untouched
            inputs = peft_prepare(*args, **kwargs)
        finally:
            model.base_model_prepare_inputs_for_generation = base_prepare
        if "past_key_values" in inputs:
            inputs["cache"] = inputs.pop("past_key_values")
        return inputs

    model.prepare_inputs_for_generation = prepare
    return model


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


# harness.snapshots.blend's reason: a blend is only toward the base where the prepared model is the base model
NO_BLEND = ("its prepared model is not the base model (the virtual tokens start random), so no weight blend "
            "passes through the base; and a blend toward no prefix at all changes the prompt's length, not a weight")


class PromptLearning(PeftStrategy):
    """What prefix and prompt tuning share: peft's save, a load whose `generate` sees the prefix, no blend."""

    not_interpolable = NO_BLEND

    def load(self, base, path):
        return generation_fix(super().load(base, path))


@register_strategy("prefix")
class Prefix(PromptLearning):
    """Prefix tuning through peft: trained key/value prefixes at every layer."""

    Params = PrefixParams
    defaults = TrainDefaults(learning_rate=1e-2)

    def prepare(self, model, params):
        from peft import PrefixTuningConfig, get_peft_model

        config = PrefixTuningConfig(
            task_type="CAUSAL_LM", num_virtual_tokens=params.num_virtual_tokens,
            prefix_projection=params.projection,
            encoder_hidden_size=params.encoder_hidden_size or model.config.hidden_size,
        )
        return generation_fix(get_peft_model(model, config))


@register_strategy("prompt")
class Prompt(PromptLearning):
    """Prompt tuning through peft: trained input embeddings of virtual tokens."""

    Params = PromptParams
    defaults = TrainDefaults(learning_rate=3e-2)

    def prepare(self, model, params):
        from peft import PromptTuningConfig, get_peft_model

        config = PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=params.num_virtual_tokens)
        return generation_fix(get_peft_model(model, config))
