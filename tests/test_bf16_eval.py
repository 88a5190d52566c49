"""eval.bf16: every suite's forwards under bf16 autocast when asked, float32 by default on CPU, a cell of its own.

Tolerance: on the tiny world, bf16 moved a document's NLL by at most 0.84% relative (64 general-text documents;
0.17% over 48 in-domain completions) and a reply's coherence perplexity by at most 0.46% (48 replies), and
flipped no 0/1 item; the tests allow 3% (RTOL), a margin over that measured worst case.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from harness.config import EvalSpec, MatrixSpec
from harness.matrix import BASE, expand, identity
from harness.models import autocast, uses_bf16

RTOL = 0.03
MATRIX = {"name": "m", "models": ["tiny-world"], "data": {"path": "zoo:tiny-world/record", "group": "person"},
          "budget": {"tokens": 600}, "strategies": ["full"],
          "eval": {"suites": ["perplexity", "task", "benchmarks", "safety"], "limit": 4, "max_new_tokens": 24,
                   "safety": "zoo:tiny-world", "general_text": "zoo:tiny-world/general/test.jsonl",
                   "inference": False,
                   "benchmarks": {"tasks": [
                       {"task": "mmlu", "data": "zoo:tiny-world/mmlu", "formulation": "cloze", "limit": 1},
                       {"task": "gsm8k", "data": "zoo:tiny-world/gsm8k", "num_fewshot": 0, "limit": 1,
                        "gen_kwargs": {"max_gen_toks": 16}}]}}}


def _cells(**eval_keys):
    spec = MatrixSpec.model_validate({**MATRIX, "eval": {**MATRIX["eval"], **eval_keys}})
    return expand(spec, root=Path("."))


def test_the_default_is_float32_on_cpu_and_true_turns_autocast_on(tiny_model):
    model, _ = tiny_model
    cpu = torch.device("cpu")
    assert EvalSpec().bf16 is None and not uses_bf16(None, cpu)
    assert uses_bf16(True, cpu) and not uses_bf16(False, torch.device("cuda"))
    with autocast(model, None):
        assert not torch.is_autocast_enabled("cpu")
    with autocast(model, True):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16


@pytest.mark.parametrize("flag", [None, False, True])
def test_every_suite_and_the_inference_timing_run_in_the_precision_asked(tiny_model, monkeypatch, flag):
    from harness.evals import evaluate, inference

    model, tok = tiny_model
    seen = []

    def spy(*args, **kwargs) -> dict:
        seen.append(torch.is_autocast_enabled("cpu"))
        return {}

    monkeypatch.setattr(evaluate, "RUNS", dict.fromkeys(evaluate.RUNS, spy))
    monkeypatch.setattr(inference, "prompts", lambda tok, cell: ["x"])
    monkeypatch.setattr(inference, "_median_seconds", lambda fn: spy() or 1.0)
    cell = SimpleNamespace(eval=SimpleNamespace(suites=["perplexity", "task"], bf16=flag))
    evaluate.run_suites(model, tok, cell, progress=lambda *a: None)
    inference.measure(model, tok, cell)
    assert seen == [bool(flag)] * 5  # two suites, then prefill and two generate timings


def test_eval_bf16_gives_a_cell_of_its_own_and_its_default_leaves_ids_alone():
    default, on = _cells(), _cells(bf16=True)
    assert all("bf16" not in identity(c.model_dump(mode="json"))["eval"] for c in default)  # stored ids kept
    assert default[0].label == BASE and default[0].id != on[0].id and default[1].id != on[1].id
    assert _cells(bf16=False)[0].id != on[0].id


@pytest.mark.slow
def test_each_suite_under_bf16_on_cpu_stays_close_to_float32(monkeypatch):
    from harness import models
    from harness.evals import benchmarks
    from harness.evals.evaluate import run_suites

    precisions = []
    wrap = benchmarks.wrap
    monkeypatch.setattr(benchmarks, "wrap", lambda *a, **k: precisions.append(
        ((lm := wrap(*a, **k)).mixed_precision_dtype, lm.softmax_dtype)) or lm)
    base = _cells()[0]
    model, tok = models.load(base.model)
    fp32, bf16 = (run_suites(model, tok, base.model_copy(update={"eval": base.eval.model_copy(
        update={"bf16": flag})}), progress=lambda *a: None) for flag in (False, True))
    (m32, i32), (m16, i16) = fp32, bf16
    assert set(m32) == set(m16) and i32["_ids"] == i16["_ids"]
    assert {"ppl_in_domain", "ppl_general", "task_rouge_l", "mmlu_cloze_acc", "refusal_harmful"} <= set(m32)
    assert precisions[0] == (None, None) and precisions[-1] == (torch.bfloat16, torch.float32)  # lm-eval's own
    moved = []
    for name in m32:
        a, b = i32[name], i16[name]
        if name.startswith("ppl_"):  # (NLL sums, counts): the counts equal, every sum within RTOL
            assert a[1] == b[1]
            moved += [abs(y - x) / x for x, y in zip(a[0], b[0], strict=True)]
        elif set(a) <= {0.0, 1.0}:  # a 0/1 item may flip on a near tie; none did when measured
            assert sum(x != y for x, y in zip(a, b, strict=True)) <= max(1, len(a) // 4), name
    for name in ("_refusal_harmful_reply_ppl", "_refusal_benign_reply_ppl"):  # the coherence judge's perplexities
        moved += [abs(y - x) / x for x, y in zip(i32[name], i16[name], strict=True) if x and y]
    assert max(moved) <= RTOL
    assert max(moved) > 0  # the forwards really ran in bf16
