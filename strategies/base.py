"""The strategy contract and the helpers strategies share.

A strategy turns a loaded base model into the model to train, with exactly the intended
parameters trainable. It does not own the training loop (harness/train.py does).

    @register_strategy("bitfit")
    class BitFit:
        Params = BitFitParams               # frozen dataclass; the matrix can sweep its fields
        defaults = TrainDefaults(learning_rate=1e-3)
        def check(self, model, params): ...  # None, or why it does not apply to this model
        def prepare(self, model, params): ...
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from torch import nn

from harness.registry import Registry


@dataclass(frozen=True)
class TrainDefaults:
    learning_rate: float


class Strategy(Protocol):
    Params: type
    defaults: TrainDefaults

    def check(self, model: nn.Module, params: Any) -> str | None: ...

    def prepare(self, model: nn.Module, params: Any) -> nn.Module: ...


STRATEGIES: Registry[type[Strategy]] = Registry("strategy", entry_point_group="harness.strategies")
register_strategy = STRATEGIES.register


def mark_trainable(model: nn.Module, predicate: Callable[[str], bool]) -> None:
    for name, p in model.named_parameters():
        p.requires_grad_(predicate(name))


def count_trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
