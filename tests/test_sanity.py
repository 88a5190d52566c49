"""The dropped-adapter check: for every strategy a trained model's logits differ from the base's, an
untrained or dropped one is flagged, and the fingerprint names exactly the evaluated weights."""

from __future__ import annotations

import pytest
import torch
from conftest import TINY_WORLD

import strategies  # noqa: F401
from harness.config import ModelSpec
from harness.evals import sanity
from harness.matrix import resolve_params
from harness.models import load
from strategies.base import STRATEGIES

CASES = {"full": {}, "lora": {"r": 4}, "qlora": {"r": 4}, "adapter": {"size": 8}, "prefix": {"num_virtual_tokens": 4},
         "bitfit": {}}


def prepared(name: str, model_dir):
    """Base loaded as the cell loads it, its reference logits, then the prepared model."""
    strategy = STRATEGIES.get(name)()
    params = resolve_params(strategy.Params, CASES[name])
    kwargs = strategy.load_kwargs(params)
    model, tok = load(ModelSpec(id=str(model_dir)), **kwargs)
    if reason := strategy.check(model, params):
        pytest.skip(reason)
    reference = sanity.base_logits(model, tok)
    return strategy.prepare(model, params), tok, reference


def train_a_little(model, tok, steps: int = 3, lr: float = 1e-2):
    ids = torch.tensor([tok("Ada Tolven lives in Rita. " * 4, add_special_tokens=False)["input_ids"]])
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    for _ in range(steps):
        model(input_ids=ids, labels=ids).loss.backward()
        opt.step()
        opt.zero_grad()


@pytest.mark.parametrize("name", list(CASES))
def test_trained_model_differs_from_base_for_every_strategy(name, tiny_model_dir):
    model, tok, reference = prepared(name, tiny_model_dir)
    assert (reference is None) == (name == "qlora")  # a 4-bit base is never run before training
    before = sanity.fingerprint(model, ModelSpec(id=str(tiny_model_dir)))
    train_a_little(model, tok)
    out = sanity.check(model, tok, ModelSpec(id=str(tiny_model_dir)), trained=True, reference=reference)
    assert out["logits_differ"] and out["logits_max_abs_diff"] > 1e-3 and "logits equal" not in out.get("warning", "")
    assert out["fingerprint"] != before
    if "base_unchanged_max_abs_diff" in out:  # peft on an unquantised base: the frozen base is untouched
        assert out["base_unchanged_max_abs_diff"] == 0.0


def test_an_untrained_adapter_is_flagged(tiny_model_dir):
    model, tok, reference = prepared("lora", tiny_model_dir)  # LoRA's B starts at zero: the base model exactly
    out = sanity.check(model, tok, ModelSpec(id=str(tiny_model_dir)), trained=True, reference=reference)
    assert not out["logits_differ"] and out["logits_max_abs_diff"] == 0.0 and "not applied" in out["warning"]


def test_a_dropped_fine_tune_is_flagged(tiny_model_dir):
    """The evaluated model is a fresh base (the trained weights were lost): its logits equal the reference."""
    model, tok, reference = prepared("full", tiny_model_dir)
    train_a_little(model, tok)
    fresh, _ = load(ModelSpec(id=str(tiny_model_dir)))
    out = sanity.check(fresh, tok, ModelSpec(id=str(tiny_model_dir)), trained=True, reference=reference)
    assert not out["logits_differ"] and "warning" in out


def test_fingerprint_is_stable_and_sees_every_trainable_tensor(tiny_model_dir):
    spec = ModelSpec(id=str(tiny_model_dir))
    a, _ = load(spec)
    b, _ = load(spec)
    assert sanity.fingerprint(a, spec) == sanity.fingerprint(b, spec)
    assert sanity.fingerprint(a, spec) != sanity.fingerprint(a, ModelSpec(id=str(tiny_model_dir), dtype="bfloat16"))
    with torch.no_grad():
        next(p for n, p in b.named_parameters() if n.endswith("bias")).add_(1e-3)
    assert sanity.fingerprint(a, spec) != sanity.fingerprint(b, spec)
    assert "logits_differ" not in sanity.check(a, _, spec, trained=False, reference=None)  # base: nothing to compare


WORLD_MODEL = TINY_WORLD / "model"  # it writes real text; a random model repeats one token whatever it is fed


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_generate_follows_forward_and_changes_with_training_for_every_strategy(name):
    torch.manual_seed(0)  # each strategy's init: the same whatever ran before
    model, tok, reference = prepared(name, WORLD_MODEL)
    generations = sanity.base_generations(model, tok) if reference is not None else None  # as cell.py takes them
    train_a_little(model, tok, steps=10, lr=3e-2)
    out = sanity.check(model, tok, ModelSpec(id=str(WORLD_MODEL)), trained=True, reference=reference,
                       reference_generations=generations)
    assert out["generate_agrees"] and out["generate_forward_gap"] <= sanity.GEN_TOLERANCE and "failure" not in out
    assert out["generation_differs"] and "warning" not in out


@pytest.mark.slow
def test_a_prefix_that_generate_drops_fails_the_check():
    """What transformers 5.24 did to peft's prefix: generate ran the base model's input preparation alone."""
    torch.manual_seed(0)  # the prefix's init: not whatever the worker's earlier tests left in the RNG
    model, tok, reference = prepared("prefix", WORLD_MODEL)
    train_a_little(model, tok, steps=10, lr=3e-2)
    model.prepare_inputs_for_generation = model.base_model_prepare_inputs_for_generation
    out = sanity.check(model, tok, ModelSpec(id=str(WORLD_MODEL)), trained=True, reference=reference)
    assert out["logits_differ"]  # the forward pass still applies the prefix ...
    assert not out["generate_agrees"] and out["generate_forward_gap"] > sanity.GEN_TOLERANCE  # ... generate not
    assert "generate() does not follow the model's own forward pass" in out["failure"]
    assert not out["generation_differs"] and "base model's 8 tokens" in out["warning"]


def _cache_renamed() -> bool:
    import inspect

    from transformers import GenerationMixin

    return "cache" in inspect.signature(GenerationMixin.prepare_inputs_for_generation).parameters


@pytest.mark.skipif(not _cache_renamed(), reason="transformers still names the cache past_key_values here")
@pytest.mark.slow
def test_peft_prefix_needs_the_fix_on_transformers_that_renamed_the_cache():
    """peft 0.21.2's own prefix model generates like the base model once the cache is called `cache`; the
    strategy's model (with strategies.prefix.generation_fix) follows its forward pass."""
    from peft import PrefixTuningConfig, get_peft_model

    from strategies.prefix import generation_fix

    torch.manual_seed(0)  # the prefix's init and training: a weak prefix could leave greedy tokens unchanged
    model, tok = load(ModelSpec(id=str(WORLD_MODEL)))
    raw = get_peft_model(model, PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4,
                                                   encoder_hidden_size=model.config.hidden_size))
    train_a_little(raw, tok, steps=10, lr=3e-2)
    assert not sanity.check(raw, tok, ModelSpec(id=str(WORLD_MODEL)), True, None)["generate_agrees"]
    assert sanity.check(generation_fix(raw), tok, ModelSpec(id=str(WORLD_MODEL)), True, None)["generate_agrees"]
