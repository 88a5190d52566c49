"""The strategy contract: every hook the harness calls, its default, and the helpers strategies share.

A strategy turns a loaded base model into the model to train, with exactly the intended
parameters trainable, and saves / loads only what it trained. It does not own the
training loop (harness/train.py does).

    @register_strategy("bitfit")
    class BitFit(StrategyBase):
        Params = BitFitParams                  # frozen dataclass; the matrix can sweep its fields
        defaults = TrainDefaults(learning_rate=1e-3)
        def check(self, model, params): ...     # None, or why it does not apply to this model
        def prepare(self, model, params): ...   # the model to train
        def save(self, model, path): ...        # only what was trained
        def load(self, base, path): ...         # base + saved -> the fine-tuned model

`Strategy` (the Protocol) lists every hook with what it receives, returns and when the harness calls
it; `StrategyBase` holds the defaults of the optional ones, and `PeftStrategy` adds save / load
through peft. The harness calls every hook directly, never `hasattr`: `register_strategy` (and an
entry-point plug-in's registration) refuses a class without the required hooks and gives one that
does not inherit `StrategyBase` the defaults of the optional hooks it leaves out.
"""

from __future__ import annotations

import dataclasses
import json
from abc import ABC, abstractmethod
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
    """Every hook a strategy has. A class is instantiated with no arguments, once per cell (per trial when the
    learning rate is searched), and the harness calls the hooks in this order: load_kwargs, check, prepare,
    then save / load (artifact size, the search's best trial), interpolated / not_interpolable (eval points)."""

    Params: type
    """Required. A frozen dataclass of the strategy's parameters, every field with a default. The matrix's
    `params:` are validated against it (unknown keys and wrong types are refused), a list value sweeps a field,
    and the resolved instance is what the other hooks get as `params`; its fields, as `dataclasses.asdict`
    gives them, are part of the cell's id."""

    defaults: TrainDefaults
    """Required. The learning rate a cell uses when the matrix sets none (meant for 0.5B-8B models)."""

    not_interpolable: str | None
    """Optional, a class attribute (not a method): why no weight blend of this strategy passes through the base
    model (its prepared model is not the base, e.g. prefix tuning's random virtual tokens), or None when
    `eval.interpolate` can blend it. With a reason, `harness.snapshots.blend` raises ValueError(reason) and each
    interpolation point records the reason instead of metrics. Default: None."""

    def load_kwargs(self, params: Any) -> dict[str, Any]:
        """Extra keyword arguments for loading the base model (`from_pretrained`), given the resolved params.

        Called once per cell before the base model is loaded, and the same kwargs reload it for each learning-rate
        trial and for `load`. QLoRA returns its `quantization_config` here. Default: {} (load as configured)."""
        ...

    def check(self, model: nn.Module, params: Any) -> str | None:
        """Whether the strategy applies to this loaded base model: None, or the reason it does not.

        Called after the base model is loaded and before `prepare`; a reason makes the cell `not_applicable`
        with it, and nothing is trained. Default: None (applies to every model)."""
        ...

    def prepare(self, model: nn.Module, params: Any) -> nn.Module:
        """The model to train: the base model (modified in place or wrapped) with exactly the intended
        parameters requiring grad, every other parameter frozen.

        Called once per cell after `check` passes, again on a freshly loaded base for each further
        learning-rate trial (same instance), and by `load`'s own code where it rebuilds the model; the memory
        estimate (harness.memory) also calls it on a meta-device model, so it reads shapes, not weight values.
        Required: no default."""
        ...

    def save(self, model: nn.Module, path: Path) -> None:
        """Write what was trained (and nothing of the frozen base, where the method allows) into the folder `path`.

        Called on the prepared, trained model: to measure the artifact's size and to keep a learning-rate
        search's best trial. Required (`PeftStrategy` saves through peft)."""
        ...

    def load(self, base: nn.Module, path: Path) -> nn.Module:
        """The fine-tuned model: a freshly loaded base model (loaded with `load_kwargs`) plus what `save` wrote
        at `path`; its outputs match the saved model's.

        Called to bring back a learning-rate search's best trial. Required (`PeftStrategy` loads through peft)."""
        ...

    def interpolated(self, name: str) -> bool:
        """Whether a blend toward the start moves the trainable parameter `name` (a name from the prepared
        model's `named_parameters()`); the others keep their trained value.

        Called by `harness.snapshots.blend` (for `eval.interpolate`) once per trained parameter. LoRA, DoRA and
        QLoRA move B and the magnitude only, so that the blend scales the update B·A linearly.
        Default: True (every trained parameter moves)."""
        ...


class StrategyBase(ABC):
    """The defaults of the optional hooks (see `Strategy` for what each means); a strategy subclasses it and
    defines `Params`, `defaults`, `prepare`, `save` and `load` (or subclasses `PeftStrategy` for the last two)."""

    not_interpolable: str | None = None

    def load_kwargs(self, params: Any) -> dict[str, Any]:
        return {}

    def check(self, model: nn.Module, params: Any) -> str | None:
        return None

    @abstractmethod
    def prepare(self, model: nn.Module, params: Any) -> nn.Module: ...

    @abstractmethod
    def save(self, model: nn.Module, path: Path) -> None: ...

    @abstractmethod
    def load(self, base: nn.Module, path: Path) -> nn.Module: ...

    def interpolated(self, name: str) -> bool:
        return True


class PeftStrategy(StrategyBase):
    """A strategy whose `prepare` returns a peft model: `save` writes the adapter alone (peft's
    `save_pretrained`), `load` wraps a fresh base with it (`PeftModel.from_pretrained`)."""

    def save(self, model: nn.Module, path: Path) -> None:
        peft_save(model, path)

    def load(self, base: nn.Module, path: Path) -> nn.Module:
        return peft_load(base, path)


REQUIRED = ("Params", "defaults", "prepare", "save", "load")
OPTIONAL = ("load_kwargs", "check", "interpolated", "not_interpolable")  # their defaults: StrategyBase's


def conform(cls: type) -> type:
    """The class itself, checked to have every required hook and, where it does not inherit `StrategyBase`
    (an out-of-tree strategy written to the bare contract), given the default of each optional hook it lacks.

    Raises TypeError naming what is missing or malformed, so a plug-in fails at registration, not mid-cell."""
    where = f"strategy {cls.__module__}.{cls.__qualname__}"
    if not isinstance(cls, type):
        raise TypeError(f"{where}: a strategy is registered as a class, got {type(cls).__name__}")
    if missing := [hook for hook in REQUIRED if not hasattr(cls, hook)]:
        raise TypeError(f"{where} lacks {', '.join(missing)} (every strategy defines {', '.join(REQUIRED)})")
    if abstract := sorted(getattr(cls, "__abstractmethods__", ())):
        raise TypeError(f"{where} leaves {', '.join(abstract)} undefined")
    if not (isinstance(cls.Params, type) and dataclasses.is_dataclass(cls.Params)):
        raise TypeError(f"{where}: Params must be a dataclass, got {cls.Params!r}")
    if not issubclass(cls, StrategyBase):
        for hook in OPTIONAL:
            if hook not in dir(cls):
                setattr(cls, hook, StrategyBase.__dict__[hook])
    if not (cls.not_interpolable is None or isinstance(cls.not_interpolable, str)):
        raise TypeError(f"{where}: not_interpolable is None or a reason string, got {cls.not_interpolable!r}")
    if uncallable := [hook for hook in ("prepare", "save", "load", "load_kwargs", "check", "interpolated")
                      if not callable(getattr(cls, hook))]:
        raise TypeError(f"{where}: {', '.join(uncallable)} must be methods")
    return cls


STRATEGIES: Registry[type[Strategy]] = Registry("strategy", entry_point_group="harness.strategies", conform=conform)
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
