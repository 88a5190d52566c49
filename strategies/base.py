"""The strategy contract and the helpers strategies share (plain functions, no base class).

A strategy turns a loaded base model into the model to train, with exactly the intended
parameters trainable, and saves / loads only what it trained. It does not own the
training loop (harness/train.py does).

    @register_strategy("bitfit")
    class BitFit:
        Params = BitFitParams                  # frozen dataclass; the matrix can sweep its fields
        defaults = TrainDefaults(learning_rate=1e-3)
        def check(self, model, params): ...     # None, or why it does not apply to this model
        def prepare(self, model, params): ...   # the model to train
        def save(self, model, path): ...        # only what was trained
        def load(self, base, path): ...         # base + saved -> the fine-tuned model

Optional (harness.snapshots.blend, for eval.interpolate): `interpolated(name) -> bool` picks the trained
parameters a blend toward the start moves (default: all of them), and `not_interpolable = "why"` says why
the strategy has no blend that passes through the base model.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from torch import nn

from harness.registry import Registry

TRAINABLE_FILE = "trainable.safetensors"


@dataclass(frozen=True)
class TrainDefaults:
    learning_rate: float


class Strategy(Protocol):
    Params: type
    defaults: TrainDefaults

    def check(self, model: nn.Module, params: Any) -> str | None: ...

    def prepare(self, model: nn.Module, params: Any) -> nn.Module: ...

    def save(self, model: nn.Module, path: Path) -> None: ...

    def load(self, base: nn.Module, path: Path) -> nn.Module: ...


STRATEGIES: Registry[type[Strategy]] = Registry("strategy", entry_point_group="harness.strategies")
register_strategy = STRATEGIES.register


def mark_trainable(model: nn.Module, predicate: Callable[[str], bool]) -> None:
    for name, p in model.named_parameters():
        p.requires_grad_(predicate(name))


def count_trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def save_trainable(model: nn.Module, path: Path, meta: dict | None = None) -> None:
    """Write only the trainable tensors (safetensors) and a small JSON describing them."""
    from safetensors.torch import save_file

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tensors = {n: p.detach().contiguous().cpu() for n, p in model.named_parameters() if p.requires_grad}
    save_file(tensors, str(path / TRAINABLE_FILE))
    (path / "strategy.json").write_text(json.dumps(meta or {}, indent=1) + "\n")


def load_trainable(model: nn.Module, path: Path) -> nn.Module:
    """Copy saved tensors into a model prepared the same way; every saved name must exist."""
    from safetensors.torch import load_file

    saved = load_file(str(Path(path) / TRAINABLE_FILE))
    missing = set(saved) - {n for n, _ in model.named_parameters()}
    if missing:
        raise ValueError(f"{path}: saved tensors not in the model: {sorted(missing)[:5]}")
    model.load_state_dict(saved, strict=False)
    return model


def peft_save(model: nn.Module, path: Path) -> None:
    model.save_pretrained(str(path), safe_serialization=True)  # peft writes the adapter alone


def peft_load(base: nn.Module, path: Path) -> nn.Module:
    from peft import PeftModel

    return PeftModel.from_pretrained(base, str(path))
