"""BitFit (Ben Zaken et al., 2021): train only the bias terms.

Llama and many modern models have no bias terms; BitFit then does not apply and says
so, rather than train nothing. (peft's BEFT, which adds biases, is a different method.)
"""

from __future__ import annotations

from dataclasses import dataclass

from strategies.base import (
    StrategyBase,
    TrainDefaults,
    load_trainable,
    mark_trainable,
    register_strategy,
    save_trainable,
)


def _is_bias(name: str) -> bool:
    return name.endswith(".bias")


@dataclass(frozen=True)
class BitFitParams:
    pass


@register_strategy("bitfit")
class BitFit(StrategyBase):
    Params = BitFitParams
    defaults = TrainDefaults(learning_rate=1e-3)  # Ben Zaken et al. swept 1e-4 .. 1e-3

    def check(self, model, params):
        if not any(_is_bias(n) for n, _ in model.named_parameters()):
            return "not applicable: the model has no bias terms (e.g. Llama), so BitFit would train nothing"
        return None

    def prepare(self, model, params):
        mark_trainable(model, _is_bias)
        return model

    def save(self, model, path):
        save_trainable(model, path, {"strategy": "bitfit"})

    def load(self, base, path):
        return load_trainable(self.prepare(base, BitFitParams()), path)
