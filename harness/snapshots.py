"""The trained part of a model at points of its run, and blends of it toward the start (a trajectory's raw material).

A snapshot is the strategy's trainable tensors, by parameter name, in a safetensors file: the
prepared model before training (`start`), the model when the run has seen a fraction of its token
budget (`SnapshotCallback`, fractions below 1), and the final model. Everything else in the model
is frozen, so writing the snapshot back (`restore`) reproduces the model of that moment exactly.

`blend` writes start + a·(final - start) into the parameters the strategy names (all trainable
ones unless it says otherwise; LoRA-family: B and the magnitude, so that a scales the update
B·A). For a strategy whose prepared model is the base model (identity start), a = 0 is the base
and a = 1 the tuned model: WiSE-FT (Wortsman et al., 2022) for full fine-tuning and BitFit.
A strategy that starts elsewhere (prefix and prompt tuning's random virtual tokens) sets
`not_interpolable` to the reason. Both hooks and their defaults: strategies/base.py.

    start = snapshot(model, folder / "start.safetensors")
    Trainer(..., callbacks=[SnapshotCallback([0.25, 0.5], budget_tokens, folder, budget_callback)])
    blend(model, start, final, 0.5, strategy)
    restore(model, final)
"""

from __future__ import annotations

import json
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from transformers import TrainerCallback


def trainable(model) -> dict[str, torch.nn.Parameter]:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def snapshot(model, path: Path | None = None, names=None) -> dict[str, torch.Tensor] | Path:
    """The trainable tensors (or those `names`d): CPU copies, or written to `path` (safetensors) and the path returned.

    `names` takes the start's names for a model reloaded from a save, whose parameters no longer require grad."""
    params = dict(model.named_parameters())
    picked = {n: params[n] for n in names} if names is not None else trainable(model)
    if path is None:
        return {n: p.detach().to("cpu", copy=True).contiguous() for n, p in picked.items()}
    tensors = {n: p.detach().cpu().contiguous() for n, p in picked.items()}  # on CPU: no copy
    from safetensors.torch import save_file

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path))
    return Path(path)


def read(source: dict[str, torch.Tensor] | Path) -> dict[str, torch.Tensor]:
    if isinstance(source, dict):
        return source
    from safetensors.torch import load_file

    return load_file(str(source))


def names(source: dict[str, torch.Tensor] | Path) -> list[str]:
    """The parameter names a snapshot holds, without reading its tensors."""
    if isinstance(source, dict):
        return list(source)
    from safetensors import safe_open

    with safe_open(str(source), framework="pt") as f:
        return list(f.keys())


def _targets(model, tensors: dict) -> dict[str, torch.nn.Parameter]:
    params = dict(model.named_parameters())
    if missing := sorted(set(tensors) - set(params)):
        raise ValueError(f"snapshot names parameters the model does not have: {missing[:5]}")
    return {n: params[n] for n in tensors}


@torch.no_grad()
def restore(model, source: dict[str, torch.Tensor] | Path) -> None:
    """Write a snapshot back into the model's parameters of the same names."""
    tensors = read(source)
    for name, p in _targets(model, tensors).items():
        p.copy_(tensors[name].to(p.device, p.dtype))


def interpolation_problem(strategy) -> str | None:
    """Why the strategy's model cannot be interpolated toward the base (None: it can)."""
    return strategy.not_interpolable


def scaled(strategy, name: str) -> bool:
    """Whether `blend` moves this trainable parameter (the strategy's `interpolated(name)`; default: every one)."""
    return strategy.interpolated(name)


@torch.no_grad()
def blend(model, start, final, a: float, strategy) -> None:
    """start + a·(final - start) in the parameters the strategy scales, final in the others."""
    if why := interpolation_problem(strategy):
        raise ValueError(why)
    start, final = read(start), read(final)
    for name, p in _targets(model, final).items():
        s, f = start[name].to(p.device, torch.float32), final[name].to(p.device, torch.float32)
        p.copy_((s + a * (f - s) if scaled(strategy, name) else f).to(p.dtype))


class SnapshotCallback(TrainerCallback):
    """Writes the trained part when the run's token count first reaches each fraction (below 1) of the budget.

    The seconds it spends are handed to the budget callback's `excluded`, so training time, and the
    time cap, do not count them, nor does its peak memory (MemoryMonitor.aside); it touches no random
    state, so the run is the one without it.
    `taken` lists {"fraction", "tokens", "step", "path"} in order; `index.json` in the folder too.
    """

    def __init__(self, fractions: list[float], budget_tokens: int, folder: Path, budget_callback=None):
        self.pending = sorted(f for f in set(fractions) if 0 < f < 1)
        self.budget_tokens, self.folder, self.budget = budget_tokens, Path(folder), budget_callback
        self.taken: list[dict] = []

    def on_step_end(self, args, state, control, model=None, **kwargs):
        seen = int(state.num_input_tokens_seen)
        due = [f for f in self.pending if seen >= f * self.budget_tokens]
        if not due:
            return
        t0 = time.perf_counter()
        if state.is_world_process_zero:
            with self.budget.memory.aside() if self.budget is not None else nullcontext():
                path = snapshot(model, self.folder / f"step{state.global_step}.safetensors")
            for f in due:
                self.taken.append({"fraction": f, "tokens": seen, "step": int(state.global_step), "path": str(path)})
            (self.folder / "index.json").write_text(json.dumps(self.taken, indent=1) + "\n", encoding="utf-8")
        self.pending = [f for f in self.pending if f not in due]
        if self.budget is not None:
            self.budget.excluded += time.perf_counter() - t0
