"""Estimate a cell's peak training memory from its model's config.json, before anything is loaded.

    peak = weights + gradients + optimizer states + activations (+ a backend's unsharded copies and comm buffers)

- weights: every parameter at the model's dtype (4 bytes for float32, 2 for bf16); for qlora
  the decoder's linear weights at bits/8 bytes plus their quantisation constants.
- gradients: one per trainable parameter, at the parameter's dtype.
- optimizer states: AdamW keeps two per trainable parameter (exp_avg, exp_avg_sq).
- activations: what autograd keeps for the backward pass, per token of the longest batch
  (batch x padded length), at the activation dtype:
      per layer   6h + 5·a·d + 4·k·d + 4i    (two RMSNorms: input, normed, output; q/k/v and
                                             their rotary copies; attention output and its
                                             o_proj input; the MLP's gate, act, up, product)
      at the top  2h + 3V                    (final norm; logits, log-softmax, logits' gradient)
      LoRA        + in + out of every wrapped linear (the adapter path's input and output)
  with h hidden size, a/k query/key-value heads, d head dim, i intermediate size, V vocab.
  qlora on CPU adds the float32 weights: bitsandbytes quantises after reading them, and the
  allocator keeps that memory for the activations that follow.

Beyond its shards, what the backend allocates per rank while a layer's gradients are computed (0 for a process
that trains alone), with R the root's parameters (in no decoder layer: the embedding, the final norm) and G the
largest layer's, at FSDP2's param dtype unless said:
- unsharded (fsdp) = R + R's gradients + 2G + G's gradients: fully_shard on the root keeps R gathered from forward
  to backward; a layer is gathered for its backward while the next is prefetched (every layer from forward on
  with reshard_after_forward off), and its gradients are full-size until its reduce-scatter.
- comm buffers (fsdp) = G's gradients at the reduce dtype (the reduce-scatter input, kept until the next layer's)
  + on gloo (CPU, a shard group of several ranks) 2 x max(R, G): each of its 2 worker threads all-gathers into
  a fresh full-size tensor, which its malloc arena keeps. (ddp) = every gradient: the reducer's buckets copy them all
  (bucket_cap_mb 25 and the 1 MB first bucket only split them).

Measured on CPU it is the resident memory the process allocated (RssAnon) above the
baseline taken just before the model loads; on CUDA torch.cuda.max_memory_allocated.

Trainable counts come from the strategy itself, prepared on a model built on the meta device
(no memory, no weights read), so they are exact. The estimate is checked against measured
peaks (above the pre-load baseline) by tests/test_memory.py.

    est = estimate(cell, seq_len=256)   # {"weights_mb": ..., "total_mb": ...} or None
"""

from __future__ import annotations

from pathlib import Path

import torch

from harness.distributed import layer_classes, training_backend
from harness.matrix import BASE, Cell, resolve_params
from harness.paths import resolve_model
from harness.train import uses_bf16

MB = 2**20
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


def _meta_model(config, cell: Cell):
    """The cell's model as its strategy prepares it, on the meta device (shapes only)."""
    from transformers import AutoModelForCausalLM

    import strategies  # noqa: F401
    from strategies.base import STRATEGIES

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, cell.model.dtype))
        if cell.strategy == BASE:
            return model, None
        params = resolve_params(STRATEGIES.get(cell.strategy).Params, cell.params)
        if cell.strategy == "qlora":  # quantisation cannot run on meta; the LoRA it adds is lora's
            from peft import get_peft_model

            from strategies.lora import lora_config

            return get_peft_model(model, lora_config(model, params)), params
        return STRATEGIES.get(cell.strategy)().prepare(model, params), params


def _weight_bytes(model, cell: Cell, params) -> float:
    dtype = DTYPE_BYTES[cell.model.dtype]
    if cell.strategy != "qlora":
        return sum(p.numel() for p in model.parameters()) * dtype
    scales = 1 / 64 + 4 / (64 * 256) if params.double_quant else 4 / 64
    per_param = 1.0 + 4 / 64 if params.bits == 8 else 0.5 + scales
    total = 0.0
    for name, module in model.named_modules():
        direct = list(module.parameters(recurse=False))
        if not direct:
            continue
        quantised = (isinstance(module, torch.nn.Linear) and ".layers." in f".{name}." and "lora_" not in name)
        for p in direct:
            total += p.numel() * (per_param if quantised and p.dim() == 2 else dtype)
    return total


def activation_elements_per_token(config) -> int:
    h, v = config.hidden_size, config.vocab_size
    i = getattr(config, "intermediate_size", None) or getattr(config, "n_inner", None) or 4 * h  # GPT-2: n_inner
    a = config.num_attention_heads
    k = getattr(config, "num_key_value_heads", None) or a
    d = getattr(config, "head_dim", None) or h // a
    per_layer = 6 * h + 5 * a * d + 4 * k * d + 4 * i
    return config.num_hidden_layers * per_layer + 2 * h + 3 * v


def lora_elements_per_token(model) -> int:
    return sum(m.in_features + m.out_features for m in model.modules()
               if hasattr(m, "lora_A") and hasattr(m, "in_features"))


def estimate(cell: Cell, seq_len: int | None = None, batch_size: int | None = None) -> dict | None:
    """Peak training memory of the cell in MB, by part; None when the model's config.json cannot be read."""
    from transformers import AutoConfig

    try:  # a local folder, or a hub id already in the local cache (nothing is downloaded offline)
        config = AutoConfig.from_pretrained(resolve_model(cell.model.id, Path(cell.root)),
                                            trust_remote_code=cell.model.trust_remote_code)
    except (OSError, ValueError):
        return None
    model, params = _meta_model(config, cell)
    trainable = [p for p in model.parameters() if p.requires_grad] if cell.strategy != BASE else []
    grad_bytes = sum(p.numel() * p.element_size() for p in trainable)
    seq_len = seq_len or cell.data.max_length
    batch_size = batch_size or cell.train.batch_size
    act_dtype = 2 if uses_bf16(cell.train) else DTYPE_BYTES[cell.model.dtype]
    parts = {
        "weights_mb": _weight_bytes(model, cell, params) / MB,
        "gradients_mb": grad_bytes / MB,
        "optimizer_mb": 2 * grad_bytes / MB,
        "activations_mb": (batch_size * seq_len * act_dtype / MB
                           * (activation_elements_per_token(config) + lora_elements_per_token(model))
                           if cell.strategy != BASE else 0.0),
        "unsharded_mb": 0.0,
        "comm_buffers_mb": 0.0,
    }
    if cell.strategy == "qlora" and not torch.cuda.is_available():
        parts["weights_mb"] += sum(p.numel() for p in model.parameters() if not p.requires_grad) * 4 / MB
    trains = cell.strategy != BASE
    world, (group, sharded) = (cell.train.world, shards(cell, Path(cell.root))) if trains else (1, (1, ()))
    for key in sharded:  # each rank holds 1/group of what its backend shards; activations are per rank anyway
        parts[key] /= group
    if trains:
        backend = training_backend(cell.train, world)
        if backend == "fsdp":  # the all-gathers run within a shard group (a hybrid shard's replicas only all-reduce)
            parts.update(_fsdp_buffers(model, cell.train.distributed.fsdp, group))
        elif backend == "ddp" and world > 1:
            parts["comm_buffers_mb"] = grad_bytes / MB
    parts = {k: round(v, 1) for k, v in parts.items()}
    return {**parts, "total_mb": round(sum(parts.values()), 1), "trainable_params": sum(p.numel() for p in trainable),
            "seq_len": seq_len, "batch_size": batch_size, "world": world, "shard_group": group,
            "sharded": list(sharded)}


GLOO_THREADS = 2  # ProcessGroupGloo's worker threads (its Options default)


def _fsdp_buffers(model, fsdp, group: int) -> dict:
    """unsharded_mb and comm_buffers_mb under FSDP2 as harness.distributed.shard applies it (module docstring)."""
    names = layer_classes(model)
    layers = [list(m.parameters()) for m in model.modules() if type(m).__name__ in names]
    inside = {id(p) for group in layers for p in group}
    root = [p for p in model.parameters() if id(p) not in inside]
    bf16 = fsdp.mixed_precision == "bf16"  # MixedPrecisionPolicy(param_dtype=bf16, reduce_dtype=float32)

    def size(group, grads=False, reduced=False) -> int:
        return sum(p.numel() * (4 if reduced and bf16 else 2 if bf16 else p.element_size())
                   for p in group if p.requires_grad or not grads)

    layer_sizes = sorted(size(g) for g in layers)
    gathered = layer_sizes if not fsdp.reshard_after_forward else layer_sizes[-2:]
    layer_grads = max((size(g, grads=True) for g in layers), default=0)
    reduce_input = max((size(g, grads=True, reduced=True) for g in layers), default=0)
    staging = GLOO_THREADS * max(layer_sizes + [size(root)]) if group > 1 and not torch.cuda.is_available() else 0
    return {"unsharded_mb": (size(root) + size(root, grads=True) + sum(gathered) + layer_grads) / MB,
            "comm_buffers_mb": (reduce_input + staging) / MB}


# What each sharding backend divides over the ranks (ZeRO stages as DeepSpeed defines them; FSDP2 full shard is
# ZeRO-3). DDP divides nothing: every rank holds a full copy.
ZERO = {0: (), 1: ("optimizer_mb",), 2: ("optimizer_mb", "gradients_mb"),
        3: ("optimizer_mb", "gradients_mb", "weights_mb")}


def shards(cell: Cell, root: Path) -> tuple[int, tuple[str, ...]]:
    """(the ranks a shard group spans, the estimate's parts each rank holds 1/that of) for the cell's
    train.distributed: every rank, or fsdp.shard_size under a hybrid shard."""
    import json

    d, world = cell.train.distributed, cell.train.world
    if d is None or world < 2 or d.backend == "ddp":
        return world, ()
    if d.backend == "fsdp":
        return cell.train.shard_group, ZERO[3]
    config = d.deepspeed.config if d.deepspeed else {}
    if isinstance(config, str):
        try:
            path = Path(config) if Path(config).is_absolute() else root / config
            config = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError):  # preflight names the unreadable config; estimate it unsharded
            config = {}
    stage = (config.get("zero_optimization") or {}).get("stage", 0) if isinstance(config, dict) else 0
    return world, ZERO.get(stage, ())
