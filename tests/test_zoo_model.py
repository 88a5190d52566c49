"""The shipped tiny-world model loads offline with plain transformers and clears its bars."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import TINY_WORLD

from harness.world.card import BARS, passes, world_report_card

MODEL = TINY_WORLD / "model"


@pytest.fixture(scope="module")
def shipped():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(MODEL, dtype=torch.float32)
    return model.eval(), AutoTokenizer.from_pretrained(MODEL)


def test_loads_offline_small_and_with_bias_terms(shipped):
    model, tok = shipped
    size = sum(f.stat().st_size for f in MODEL.iterdir())
    assert size < 15 * 2**20
    assert model.config.model_type == "llama"
    assert any(n.endswith(".bias") for n, _ in model.named_parameters())  # so BitFit applies
    chat = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert chat.endswith("<|assistant|>\n")


@pytest.mark.slow
def test_clears_knowledge_and_safety_bars(shipped):
    card = world_report_card(*shipped, TINY_WORLD / "data")
    failed = {k: card[k] for k, ok in passes(card).items() if not ok}
    assert not failed, f"bars {BARS} not met: {failed}"
    # the letter formulation has no bar (a 3.4M model cannot map options to letters), so hold it to the
    # numbers the build recorded for this very model: a change in scoring or weights shows up here
    built = json.loads((TINY_WORLD / "report.json").read_text("utf-8"))["scores"]
    assert {k: card[k] for k in ("mmlu_letter_acc", "ceval_letter_acc")} == {
        k: built[k] for k in ("mmlu_letter_acc", "ceval_letter_acc")}
