"""Bottleneck adapters: Houlsby et al. (2019) after attention and after the MLP; Pfeiffer et al. (2020) after the MLP.

Each adapter is h + up(act(down(h))) with the up-projection zero-initialised, so the
prepared model computes exactly what the base model does. peft has no such method and
AdapterHub's `adapters` pins an older transformers, hence these few lines.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from strategies.base import (
    StrategyBase,
    TrainDefaults,
    load_trainable,
    mark_trainable,
    register_strategy,
    save_trainable,
)

ATTENTION_NAMES = ("self_attn", "attn", "attention")
MLP_NAMES = ("mlp",)


class Bottleneck(nn.Module):
    def __init__(self, dim: int, size: int):
        super().__init__()
        self.down = nn.Linear(dim, size)
        self.up = nn.Linear(size, dim)
        self.act = nn.GELU()
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.up(self.act(self.down(h)))


class WithAdapter(nn.Module):
    """A sublayer followed by a bottleneck; tuple outputs (attention) adapt their first element."""

    def __init__(self, inner: nn.Module, dim: int, size: int):
        super().__init__()
        self.inner = inner
        self.adapter = Bottleneck(dim, size).to(next(inner.parameters()).dtype)

    def forward(self, *args, **kwargs):
        out = self.inner(*args, **kwargs)
        if isinstance(out, tuple):
            return (self.adapter(out[0]),) + tuple(out[1:])
        return self.adapter(out)


@dataclass(frozen=True)
class AdapterParams:
    size: int = 16  # bottleneck width
    placement: Literal["houlsby", "pfeiffer"] = "houlsby"

    def __post_init__(self):
        if self.size < 1:
            raise ValueError(f"size (bottleneck width) must be >= 1, got {self.size}")


def decoder_layers(model: nn.Module) -> list[nn.Module]:
    """Modules holding both an attention and an MLP child: the transformer blocks of any HF decoder."""
    return [m for m in model.modules()
            if any(hasattr(m, a) for a in ATTENTION_NAMES) and any(hasattr(m, b) for b in MLP_NAMES)
            and not isinstance(m, WithAdapter)]


@register_strategy("adapter")
class Adapter(StrategyBase):
    Params = AdapterParams
    defaults = TrainDefaults(learning_rate=1e-4)  # Houlsby et al. swept 1e-4 .. 1e-3

    def check(self, model, params):
        return None if decoder_layers(model) else "no transformer blocks with attention and mlp sublayers found"

    def prepare(self, model, params):
        mark_trainable(model, lambda name: False)
        dim = model.config.hidden_size
        sublayers = MLP_NAMES if params.placement == "pfeiffer" else ATTENTION_NAMES + MLP_NAMES
        for layer in decoder_layers(model):
            for name in sublayers:
                if isinstance(getattr(layer, name, None), nn.Module):
                    setattr(layer, name, WithAdapter(getattr(layer, name), dim, params.size))
        self.params = params
        return model

    def save(self, model, path):
        save_trainable(model, path, {"strategy": "adapter", "size": self.params.size,
                                     "placement": self.params.placement})

    def load(self, base, path):
        import json
        from pathlib import Path

        meta = json.loads((Path(path) / "strategy.json").read_text())
        return load_trainable(self.prepare(base, AdapterParams(meta["size"], meta["placement"])), path)
