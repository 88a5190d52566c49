"""Training beyond one process: what `train.distributed` compiles to, and proof that a sharding backend sharded.

- ddp (the default): transformers' Trainer wraps the model in DistributedDataParallel under torchrun.
- fsdp: torch's FSDP2. `shard` calls `torch.distributed.fsdp.fully_shard` on each decoder layer (the classes the
  model names in `_no_split_modules`) and then on the root, and marks the model the way transformers marks one it
  sharded at load time (`_is_distributed_loading_by_transformers`), so that Trainer and Accelerate neither wrap it
  in DDP nor shard it again (transformers/trainer.py `_prepare_for_training`). Trainer's own `fsdp=` is not used:
  with `use_cpu=True` it trains a DistributedDataParallel model, silently (tests/test_fsdp.py shows it).
- deepspeed: `TrainingArguments(deepspeed=config)`, the config passed through as given.

Sharding is verified, never assumed: `ShardCheck` looks at the model Trainer is about to train; a model wrapped in
DDP, or holding (nearly) every parameter element on each rank, fails the cell with `NotSharded`. Each rank's
parameter, gradient and optimizer-state bytes (`local_bytes`) are gathered to rank 0 (`per_rank`); the trained
model is gathered on rank 0 as a full state dict and loaded into a plain copy (`full_model`), so evaluation runs
exactly as in a single-process cell.

    model = shard(model, cell.train.distributed.fsdp)      # every rank, before Trainer
    usage["per_rank"] = per_rank(local_bytes(model, trainer.optimizer, grads) | {"rank": rank})
    model = full_model(model, rebuild)                      # rank 0: a plain model; other ranks: None
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from transformers import TrainerCallback

SHARDED_AT_MOST = 0.75  # x 2/group: a rank holding more than 1.5/group of the elements (0.75 of 2) did not shard


class NotSharded(RuntimeError):
    """A sharding backend left each rank with the whole model; the cell fails with this reason."""


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def training_backend(spec, world: int) -> str:
    """The backend a process of a `world`-process cell trains under (`spec` a TrainSpec): the cell's own on several
    processes; alone "ddp", a plain Trainer that wraps nothing, except fsdp under torchrun: FSDP2 over one rank,
    how one GPU checks the sharding path (benchmarks/gpu_bench.py fsdp); no cell does this."""
    if spec.backend == "fsdp" and "LOCAL_RANK" in os.environ:
        return "fsdp"
    return spec.backend if world > 1 else "ddp"


def _is_dtensor(t) -> bool:
    from torch.distributed.tensor import DTensor

    return isinstance(t, DTensor)


def _local(t) -> torch.Tensor:
    return t.to_local() if _is_dtensor(t) else t


def _innermost(model):
    """The transformers model under PEFT's wrappers (it holds `_no_split_modules` and transformers' flags)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def layer_classes(model) -> set[str]:
    names = set(getattr(_innermost(model), "_no_split_modules", None) or [])
    if not names:
        raise NotSharded(f"{type(_innermost(model)).__name__} names no decoder layer class (_no_split_modules): "
                         "fsdp does not know what to shard")
    return names


def shard(model, fsdp) -> torch.nn.Module:
    """FSDP2 on each decoder layer, then the root (in place; the same object is returned). `fsdp` is a FsdpSpec."""
    import torch.distributed as dist
    from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, fully_shard

    if not dist.is_initialized():
        raise NotSharded("fsdp: no process group (the cell was not started by torchrun)")
    if fsdp.activation_checkpointing:
        _innermost(model).gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    kwargs = {"reshard_after_forward": fsdp.reshard_after_forward}
    if fsdp.mixed_precision == "bf16":
        kwargs["mp_policy"] = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    if fsdp.cpu_offload:
        kwargs["offload_policy"] = CPUOffloadPolicy()
    if torch.cuda.is_available():  # each rank's model on its own GPU before sharding
        model.to(torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0"))))
    world = dist.get_world_size()
    if fsdp.shard_size and fsdp.shard_size < world:  # hybrid shard: a 2-D mesh, FSDP2 replicates over its first dim
        from torch.distributed.device_mesh import init_device_mesh

        kwargs["mesh"] = init_device_mesh("cuda" if torch.cuda.is_available() else "cpu",
                                          (world // fsdp.shard_size, fsdp.shard_size),
                                          mesh_dim_names=("replicate", "shard"))
    names = layer_classes(model)
    layers = [m for m in model.modules() if type(m).__name__ in names]
    if not layers:
        raise NotSharded(f"fsdp: no module of the decoder layer classes {sorted(names)} in the model")
    for layer in layers:
        fully_shard(layer, **kwargs)
    fully_shard(model, **kwargs)
    _innermost(model)._is_distributed_loading_by_transformers = True  # Trainer: no DDP wrap, no second sharding
    return model


def local_fraction(model) -> float:
    """Share of the model's parameter elements held by this rank (1.0 for an unsharded or DDP-wrapped model)."""
    params = list(model.parameters())
    total = sum(p.numel() for p in params)
    return sum(_local(p).numel() for p in params) / max(total, 1)


def sharding_problem(wrapped, group: int, fractions: list[float]) -> str | None:
    """Why a model that should be sharded over `group` ranks (the world, or a hybrid shard's group) is not (None when
    it is)."""
    if isinstance(wrapped, torch.nn.parallel.DistributedDataParallel):
        return (f"the model came out of preparation as a DistributedDataParallel (a full copy on each of "
                f"{len(fractions)} ranks): the sharding backend silently did not shard")
    if group > 1 and max(fractions) > SHARDED_AT_MOST * 2 / group:
        shown = ", ".join(f"{f:.3f}" for f in fractions)
        return (f"each rank holds {shown} of the parameter elements, sharded over {group} ranks (about "
                f"{1 / group:.3f} expected): the sharding backend silently did not shard")
    return None


def gather(obj) -> list:
    """`obj` from every rank, in rank order (every rank calls it); [obj] outside a process group."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


class ShardCheck(TrainerCallback):
    """At the start of training, the model Trainer trains must be sharded over `group` ranks; else NotSharded on
    every rank."""

    def __init__(self, group: int):
        self.group, self.trainer, self.fractions = group, None, []

    def on_train_begin(self, args, state, control, **kwargs):
        wrapped = self.trainer.model_wrapped if self.trainer is not None else kwargs.get("model")
        self.fractions = gather(local_fraction(wrapped))
        if why := sharding_problem(wrapped, self.group, self.fractions):
            raise NotSharded(why)


class GradBytes(TrainerCallback):
    """Bytes of the gradients local to this rank, taken just before the first optimizer step (Trainer then frees
    them with zero_grad)."""

    def __init__(self, model):
        self.model, self.bytes = model, None

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        if self.bytes is None:
            self.bytes = sum(_nbytes(p.grad) for p in self.model.parameters() if p.grad is not None)


def _nbytes(t) -> int:
    t = _local(t)
    return t.numel() * t.element_size()


def local_bytes(model, optimizer, grad_bytes: int | None) -> dict:
    """Bytes of the parameter, gradient and optimizer-state tensors this rank holds, and its share of elements."""
    states = getattr(optimizer, "state", {}) or {}
    optim = sum(_nbytes(v) for s in states.values() for v in s.values() if torch.is_tensor(v) and v.dim() > 0)
    return {"param_bytes": sum(_nbytes(p) for p in model.parameters()), "grad_bytes": int(grad_bytes or 0),
            "optim_bytes": optim, "local_fraction": round(local_fraction(model), 6)}


def full_model(model, rebuild):
    """The trained FSDP model as a plain one on rank 0 (None on the others; every rank must call it).

    The full state dict is gathered to rank 0's CPU (torch.distributed.checkpoint's get_model_state_dict) and
    loaded into `rebuild()`, the cell's model loaded and prepared again as a single process would have it.
    """
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if rank() != 0:
        return None
    plain = rebuild()
    missing, unexpected = plain.load_state_dict(state, strict=False)
    if unexpected or [k for k in missing if k in dict(plain.named_parameters())]:
        raise RuntimeError(f"fsdp: the gathered state dict does not fit the rebuilt model (missing {missing[:5]}, "
                           f"unexpected {unexpected[:5]})")
    return plain


def deepspeed_problem(config, root: Path) -> str | None:
    """Why a deepspeed config cannot be used (None when it can): a readable JSON mapping (or a dict) whose
    zero_optimization.stage is 0-3."""
    if isinstance(config, str):
        path = Path(config) if Path(config).is_absolute() else root / config
        try:
            config = json.loads(path.read_text("utf-8"))
        except OSError as e:
            return f"distributed.deepspeed.config: cannot read {path} ({e.strerror or e})"
        except ValueError as e:
            return f"distributed.deepspeed.config: {path} is not JSON ({e})"
    if not isinstance(config, dict):
        return "distributed.deepspeed.config: expected a mapping (a DeepSpeed config)"
    zero = config.get("zero_optimization")
    stage = zero.get("stage") if isinstance(zero, dict) else None
    if isinstance(stage, bool) or stage not in (0, 1, 2, 3):
        return f"distributed.deepspeed.config: zero_optimization.stage must be 0, 1, 2 or 3, not {stage!r}"
    return None


def deepspeed_config(config, root: Path):
    """What TrainingArguments(deepspeed=...) gets: the dict, or the JSON file's absolute path."""
    if isinstance(config, str) and not Path(config).is_absolute():
        return str(root / config)
    return config


def deepspeed_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("deepspeed") is not None
