"""Every registered strategy, on tiny Llama, Qwen2 and GPT-2 configs: exactly the intended
parameters train, the loss goes down, frozen weights stay bit-identical, identity-at-init
methods start as the base model, and save -> load on a fresh base reproduces the logits."""

from __future__ import annotations

import copy
import dataclasses
import inspect

import pytest
import torch

import strategies  # noqa: F401
from harness.matrix import resolve_params
from harness.registry import Registry
from strategies.base import (
    OPTIONAL,
    REQUIRED,
    STRATEGIES,
    PeftStrategy,
    Strategy,
    StrategyBase,
    TrainDefaults,
    conform,
    count_trainable,
)

V = 256
ARCHS = {
    "llama": lambda: __import__("transformers").LlamaConfig(
        vocab_size=V, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=4, attention_bias=True, mlp_bias=True),
    "llama-nobias": lambda: __import__("transformers").LlamaConfig(
        vocab_size=V, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=4),
    "qwen2": lambda: __import__("transformers").Qwen2Config(
        vocab_size=V, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2),
    "gpt2": lambda: __import__("transformers").GPT2Config(vocab_size=V, n_embd=64, n_layer=2, n_head=4,
                                                          n_positions=128),
}
# strategy -> (params, starts exactly as the base model)
CASES = {
    "full": ({}, True),
    "lora": ({"r": 4}, True),
    "adapter": ({"size": 8}, True),
    "bitfit": ({}, True),
    "prefix": ({"num_virtual_tokens": 4}, False),
    "prompt": ({"num_virtual_tokens": 4}, False),
    "oft": ({"block_size": 16}, True),
    "ia3": ({}, True),
    "ln_tuning": ({}, True),
    "dora": ({"r": 4}, True),
}
# (IA)^3's layers per architecture (peft's defaults) and the side each vector scales
IA3_LAYERS = {"llama": {"k_proj": "out", "v_proj": "out", "down_proj": "in"},
              "qwen2": {"q_proj": "out", "v_proj": "out", "down_proj": "in"},
              "gpt2": {"c_attn": "out", "mlp.c_proj": "in"}}


def make_base(arch: str, seed: int = 0):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(ARCHS[arch]()).eval()


def batch():
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, V, (4, 24), generator=g)
    return {"input_ids": ids, "labels": ids.clone()}


def train_steps(model, b, lr: float, steps: int = 8):
    """A few AdamW steps on one batch; returns the eval-mode output afterwards."""
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    for _ in range(steps):
        model(**b).loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()
    with torch.no_grad():
        return model(**b)


def linear_layers(model) -> list[tuple[str, int, int]]:
    """(name, in, out) of every linear-like layer but the output head: what LoRA 'all-linear' targets."""
    from transformers.pytorch_utils import Conv1D

    layers = []
    for name, m in model.named_modules():
        if name.endswith("lm_head"):
            continue
        if isinstance(m, torch.nn.Linear):
            layers.append((name, m.in_features, m.out_features))
        elif isinstance(m, Conv1D):
            layers.append((name, *m.weight.shape))
    return layers


def linear_shapes(model) -> list[tuple[int, int]]:
    return [(i, o) for _, i, o in linear_layers(model)]


def expected_trainable(name: str, base, params: dict) -> int:
    c = base.config
    layers, hidden = c.num_hidden_layers, c.hidden_size
    if name == "full":
        return sum(p.numel() for p in base.parameters())
    if name == "lora":
        return sum(params["r"] * (i + o) for i, o in linear_shapes(base))
    if name == "bitfit":
        return sum(p.numel() for n, p in base.named_parameters() if n.endswith(".bias"))
    if name == "adapter":  # houlsby: two bottlenecks per block, each down (d*s + s) and up (s*d + d)
        s = params["size"]
        return layers * 2 * (2 * hidden * s + s + hidden)
    if name == "prefix":  # a key and a value vector per virtual token, layer and kv head
        kv_heads = getattr(c, "num_key_value_heads", None) or c.num_attention_heads
        return params["num_virtual_tokens"] * layers * 2 * (hidden // c.num_attention_heads) * kv_heads
    if name == "prompt":
        return params["num_virtual_tokens"] * hidden
    if name == "oft":  # per layer: in / b blocks, each a skew-symmetric b x b matrix's b(b-1)/2 numbers
        b = params["block_size"]
        return sum(i // b * (b * (b - 1) // 2) for i, _ in linear_shapes(base))
    if name == "ia3":  # one number per output channel (attention) or input channel (feed-forward)
        sides = IA3_LAYERS[c.model_type]
        return sum({"in": i, "out": o}[side] for n, i, o in linear_layers(base)
                   for suffix, side in sides.items() if n.endswith(suffix))
    if name == "ln_tuning":  # every weight and bias of every norm layer
        return sum(p.numel() for n, m in base.named_modules() if type(m).__name__.endswith("Norm")
                   for p in m.parameters(recurse=False))
    if name == "dora":  # LoRA's numbers plus a magnitude per output channel
        return sum(params["r"] * (i + o) + o for i, o in linear_shapes(base))
    raise KeyError(name)


def prepared(name: str, arch: str):
    strategy = STRATEGIES.get(name)()
    params = resolve_params(strategy.Params, CASES[name][0])
    base = make_base(arch)
    reference = copy.deepcopy(base)
    if reason := strategy.check(base, params):
        pytest.skip(reason)
    return strategy, params, strategy.prepare(base, params), reference


def test_every_registered_strategy_is_covered():
    built_in = {n for n in STRATEGIES.names() if STRATEGIES.get(n).__module__.startswith("strategies.")}
    assert built_in - {"qlora"} == set(CASES)  # qlora has its own test below


BUILT_IN = sorted(n for n in STRATEGIES.names() if STRATEGIES.get(n).__module__.startswith("strategies."))
HOOKS = [n for n, _ in inspect.getmembers(Strategy) if not n.startswith("_")] + list(Strategy.__annotations__)


def test_the_protocol_lists_every_hook_and_documents_it():
    assert sorted(set(HOOKS)) == sorted(REQUIRED + OPTIONAL)
    for name in ("load_kwargs", "check", "prepare", "save", "load", "interpolated"):
        assert "Default" in getattr(Strategy, name).__doc__ or "Required" in getattr(Strategy, name).__doc__, name


@pytest.mark.parametrize("name", BUILT_IN)
def test_every_hook_returns_its_documented_type_on_the_tiny_model(name, tiny_model_dir, tmp_path):
    """The registry-wide contract: each hook of the Protocol is there, called as the harness calls it."""
    from harness.config import ModelSpec
    from harness.models import load

    cls = STRATEGIES.get(name)
    assert issubclass(cls, StrategyBase) and all(hasattr(cls, hook) for hook in HOOKS)
    assert dataclasses.is_dataclass(cls.Params) and isinstance(cls.defaults, TrainDefaults)
    assert cls.not_interpolable is None or (isinstance(cls.not_interpolable, str) and cls.not_interpolable)
    strategy = cls()
    params = resolve_params(cls.Params, CASES.get(name, ({"r": 4},))[0])
    kwargs = strategy.load_kwargs(params)
    assert isinstance(kwargs, dict)
    model, _ = load(ModelSpec(id=str(tiny_model_dir)), **kwargs)
    reason = strategy.check(model, params)
    assert reason is None or (isinstance(reason, str) and reason)
    if reason:  # qlora where bitsandbytes cannot quantise: the reason is the whole answer
        assert name == "qlora", reason
        return
    model = strategy.prepare(model, params)
    assert isinstance(model, torch.nn.Module) and count_trainable(model) > 0
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    picked = [strategy.interpolated(n) for n in names]
    assert all(isinstance(b, bool) for b in picked)
    assert any(picked) or cls.not_interpolable  # a blend that moves nothing would be the tuned model at every a
    assert strategy.save(model, tmp_path / "saved") is None
    reloaded = strategy.load(load(ModelSpec(id=str(tiny_model_dir)), **kwargs)[0], tmp_path / "saved")
    assert isinstance(reloaded, torch.nn.Module)


def test_the_base_gives_the_optional_hooks_their_defaults():
    @dataclasses.dataclass(frozen=True)
    class P:
        pass

    class Minimal(PeftStrategy):
        Params, defaults = P, TrainDefaults(learning_rate=1e-3)

        def prepare(self, model, params):
            return model

    s = conform(Minimal)()
    assert (s.load_kwargs(P()), s.check(None, P()), s.interpolated("any.weight"), s.not_interpolable) == (
        {}, None, True, None)

    class Abstract(StrategyBase):  # save and load left out, and no PeftStrategy to give them
        Params, defaults = P, TrainDefaults(learning_rate=1e-3)

        def prepare(self, model, params):
            return model

    with pytest.raises(TypeError, match="load, save"):
        conform(Abstract)


def test_registration_fills_a_bare_plugin_class_and_refuses_an_incomplete_one():
    """Out-of-tree strategies need not inherit StrategyBase: registering one (decorator or entry point) checks the
    required hooks and gives it the optional ones' defaults, in place, so the registered object is the class."""
    @dataclasses.dataclass(frozen=True)
    class P:
        pass

    class Bare:
        Params, defaults = P, TrainDefaults(learning_rate=1e-3)

        def prepare(self, model, params):
            return model

        def save(self, model, path):
            pass

        def load(self, base, path):
            return base

        def interpolated(self, name):  # its own hook stays
            return name.endswith("B")

    registry = Registry("strategy", conform=conform)
    assert registry.register("bare")(Bare) is Bare and registry.get("bare") is Bare
    assert not issubclass(Bare, StrategyBase)
    s = Bare()
    assert (s.load_kwargs(P()), s.check(None, P()), Bare.not_interpolable) == ({}, None, None)
    assert s.interpolated("lora_B") and not s.interpolated("lora_A")

    class NoLoad:
        Params, defaults = P, TrainDefaults(learning_rate=1e-3)

        def prepare(self, model, params):
            return model

        save = prepare

    with pytest.raises(TypeError, match="lacks load"):
        registry.register("noload")(NoLoad)

    class BadReason(Bare):
        not_interpolable = True

    with pytest.raises(TypeError, match="not_interpolable"):
        registry.register("badreason")(BadReason)

    class NotADataclass(Bare):
        Params = dict

    with pytest.raises(TypeError, match="Params must be a dataclass"):
        registry.register("notadataclass")(NotADataclass)
    assert registry.names() == ["bare"]


def test_qlora_params_are_lora_params_plus_the_quantisation_in_their_old_order():
    """QLoRAParams subclasses LoRAParams; its fields, defaults and their order (a cell's params, in results) are
    what they were when it repeated LoRA's fields after its own."""
    from strategies.lora import LoRAParams
    from strategies.qlora import QLoRAParams

    assert issubclass(QLoRAParams, LoRAParams)
    assert list(dataclasses.asdict(QLoRAParams()).items()) == [
        ("bits", 4), ("quant_type", "nf4"), ("double_quant", True), ("compute_dtype", "float32"), ("r", 8),
        ("alpha", None), ("dropout", 0.0), ("target_modules", "all-linear"), ("use_rslora", False),
        ("use_dora", False), ("extra", {})]
    with pytest.raises(ValueError, match="LoRA rank"):  # LoRA's checks hold for QLoRA too
        QLoRAParams(r=0)


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gpt2"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_strategy_contract(name, arch, tmp_path):
    strategy, params, model, reference = prepared(name, arch)
    assert count_trainable(model) == expected_trainable(name, reference, CASES[name][0])

    b = batch()
    with torch.no_grad():
        base_logits = reference(input_ids=b["input_ids"]).logits
        start = model(**b)
    if CASES[name][1]:
        assert torch.allclose(start.logits[:, -b["input_ids"].shape[1]:], base_logits, atol=1e-6)

    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    after = train_steps(model, b, lr=STRATEGIES.get(name).defaults.learning_rate * 3)
    assert after.loss < start.loss, (start.loss.item(), after.loss.item())
    assert all(torch.equal(p, frozen[n]) for n, p in model.named_parameters() if n in frozen)

    strategy.save(model, tmp_path / "saved")
    reloaded = strategy.load(make_base(arch), tmp_path / "saved").eval()
    with torch.no_grad():
        assert (reloaded(input_ids=b["input_ids"]).logits - after.logits).abs().max() < 1e-5


def test_lora_merge_matches_and_attention_only_targets_fewer():
    strategy, params, model, reference = prepared("lora", "llama")
    torch.nn.init.normal_(next(p for n, p in model.named_parameters() if "lora_B" in n))
    ids = batch()["input_ids"]
    with torch.no_grad():
        before = model(input_ids=ids).logits
        merged = model.merge_and_unload()(input_ids=ids).logits
    assert (before - merged).abs().max() < 1e-5
    attention = resolve_params(strategy.Params, {"r": 4, "target_modules": "attention"})
    attn = STRATEGIES.get("lora")().prepare(make_base("llama"), attention)
    assert count_trainable(attn) == 2 * 4 * 4 * (64 + 64)  # q, k, v, o in 2 layers


def test_bitfit_says_why_it_does_not_apply_to_a_bias_free_model():
    strategy = STRATEGIES.get("bitfit")()
    reason = strategy.check(make_base("llama-nobias"), resolve_params(strategy.Params, {}))
    assert reason and "no bias terms" in reason


def test_pfeiffer_adapter_only_follows_the_mlp():
    strategy = STRATEGIES.get("adapter")()
    model = strategy.prepare(make_base("llama"), resolve_params(strategy.Params, {"size": 8, "placement": "pfeiffer"}))
    assert count_trainable(model) == 2 * (2 * 64 * 8 + 8 + 64)


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_qlora_quantises_the_base_and_trains_only_lora(arch, tmp_path):
    from transformers import AutoModelForCausalLM

    strategy = STRATEGIES.get("qlora")()
    params = resolve_params(strategy.Params, {"r": 4})
    make_base(arch).save_pretrained(tmp_path / "base")
    load = lambda: AutoModelForCausalLM.from_pretrained(tmp_path / "base", **strategy.load_kwargs(params))  # noqa: E731
    base = load()
    if reason := strategy.check(base, params):
        pytest.skip(reason)
    assert any(type(m).__name__ == "Linear4bit" for m in base.modules())
    model = strategy.prepare(base, params)
    assert count_trainable(model) == expected_trainable("lora", make_base(arch), {"r": 4})
    assert all("lora_" in n for n, p in model.named_parameters() if p.requires_grad)
    b = batch()
    model.train()  # bitsandbytes repacks 4-bit weights for CPU inference on the first eval-mode forward
    with torch.no_grad():
        start = model(**b).loss
    after = train_steps(model, b, lr=3e-3)
    assert after.loss < start
    strategy.save(model, tmp_path / "adapter")
    with torch.no_grad():
        again = strategy.load(load(), tmp_path / "adapter")(input_ids=b["input_ids"]).logits
    assert (again - after.logits).abs().max() < 1e-4  # dequantisation is deterministic


def test_oft_says_why_it_does_not_apply_to_gpt2_conv1d():
    strategy = STRATEGIES.get("oft")()
    reason = strategy.check(make_base("gpt2"), resolve_params(strategy.Params, {}))
    assert reason and "Conv1D" in reason
    assert strategy.check(make_base("llama"), resolve_params(strategy.Params, {})) is None


def test_dora_trains_more_than_lora_by_one_magnitude_per_output_channel():
    base = make_base("llama")
    counts = {name: count_trainable(STRATEGIES.get(name)().prepare(copy.deepcopy(base), resolve_params(
        STRATEGIES.get(name).Params, {"r": 4}))) for name in ("lora", "dora")}
    assert counts["dora"] - counts["lora"] == sum(o for _, o in linear_shapes(base))
