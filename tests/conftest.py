"""Shared fixtures: a tiny random Llama built in-process (no hub), the shipped tokenizer, tmp results."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(var, "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One intra-op thread in each test process and in every process a test starts (they inherit it): the README's
# command runs two pytest-xdist workers on CI's two cores, and the tiny models here gain nothing from more threads.
for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"
TINY_WORLD = REPO / "harness" / "zoo" / "tiny-world"


@pytest.fixture(scope="session")
def world_tok():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(TINY_WORLD / "model")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, world_tok):
    """A 2-layer, hidden-64 random Llama with bias terms, saved like any local model folder."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(world_tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512,
                         attention_bias=True, mlp_bias=True, tie_word_embeddings=True,
                         bos_token_id=world_tok.bos_token_id, eos_token_id=world_tok.eos_token_id,
                         pad_token_id=world_tok.pad_token_id)
    out = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(config).save_pretrained(out)
    world_tok.save_pretrained(out)
    return out


@pytest.fixture()
def tiny_model(tiny_model_dir):
    from harness.config import ModelSpec
    from harness.models import load

    return load(ModelSpec(id=str(tiny_model_dir)))


@pytest.fixture(scope="session", autouse=True)
def harness_cache(tmp_path_factory):
    """lm-eval task configs (and the datasets cache kept beside them) in this worker's own folder, not ~/.cache:
    parallel workers never build one folder at once, and a test run leaves the user's cache alone."""
    if os.environ.get("HARNESS_CACHE"):  # the caller chose one
        yield
        return
    os.environ["HARNESS_CACHE"] = str(tmp_path_factory.mktemp("harness-cache"))
    yield
    del os.environ["HARNESS_CACHE"]
