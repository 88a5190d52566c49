"""FastHFLM: shared-context log-likelihoods equal stock HFLM's per request; generation and fallbacks untouched."""

from __future__ import annotations

import pytest
from conftest import TINY_WORLD

from harness.evals import benchmarks
from harness.evals.fastlm import FastHFLM
from harness.evals.lmeval_tasks import write_local_task


@pytest.fixture(autouse=True)
def task_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def world():
    from harness.config import ModelSpec
    from harness.models import load

    return load(ModelSpec(id="tiny-world"))


def requests(task: str, formulation: str | None, limit: int, **overrides) -> list:
    """The Instances lm-eval builds for the tiny world's local `task` (first `limit` docs per subtask)."""
    from lm_eval.tasks import TaskManager

    folder, name = write_local_task(task, formulation, TINY_WORLD / "data" / task.split("-")[0], "t")
    tm = TaskManager(include_path=str(folder), include_defaults=False)
    loaded = benchmarks.load_entry(tm, name, overrides.get("num_fewshot"), overrides.get("gen_kwargs"))
    out = []
    for t in loaded["tasks"].values():
        t.build_all_requests(limit=limit)
        out += t.instances
    return out


def count_shared_batches(lm: FastHFLM) -> list[int]:
    calls: list[int] = []
    score = lm._score
    lm._score = lambda chunk, reqs: calls.append(len(chunk)) or score(chunk, reqs)
    return calls


@pytest.mark.parametrize("task, formulation", [("mmlu", "cloze"), ("mmlu", "letter"), ("ceval-valid", "cloze"),
                                               ("ceval-valid", "letter")])
def test_shared_context_equals_stock_hflm_per_request(world, task, formulation):
    from lm_eval.models.huggingface import HFLM

    model, tok = world
    reqs = requests(task, formulation, 6)
    stock = HFLM(pretrained=model, tokenizer=tok, batch_size=8).loglikelihood(reqs, disable_tqdm=True)
    fast = FastHFLM(pretrained=model, tokenizer=tok, batch_size=8)
    batches = count_shared_batches(fast)
    mine = fast.loglikelihood(reqs, disable_tqdm=True)
    assert len(mine) == len(stock) == len(reqs) == 3 * 6 * 4
    for (a, greedy_a), (b, greedy_b) in zip(stock, mine, strict=True):
        assert a == pytest.approx(b, abs=1e-4) and greedy_a == greedy_b
    contexts = len({r.args[0] for r in reqs})
    assert sum(batches) == contexts == 3 * 6  # each question's context ran once, in batches of <= 8 options
    assert all(n == 2 for n in batches)
    assert _choices(stock, reqs) == _choices(mine, reqs)
    assert fast.seconds["loglikelihood"] > 0


def _choices(lls: list, reqs: list) -> list[int]:
    by_doc: dict = {}
    for (ll, _), r in zip(lls, reqs, strict=True):
        by_doc.setdefault((r.task_name, r.doc_id), []).append(ll)
    return [max(range(len(v)), key=v.__getitem__) for _, v in sorted(by_doc.items())]


def test_multi_token_continuations_and_truncated_contexts(world):
    """Options of several tokens are scored through the cache; a pair over max_length takes HFLM's own path."""
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    model, tok = world
    ctx = "Question: Where does Ada Keller live?\nAnswer:"
    reqs = [Instance("loglikelihood", {}, (c, o), i) for i, (c, o) in enumerate(
        [(ctx, " Neli"), (ctx, " the city of Neli and more"), (ctx, " a"), ("", "Ada Keller"),
         ("Where? " * 40, " here and there")])]
    assert len(HFLM(pretrained=model, tokenizer=tok, batch_size=4).tok_encode("Where? " * 40)) > 24
    for max_length in (None, 24):
        kw = {"max_length": max_length} if max_length else {}
        stock = HFLM(pretrained=model, tokenizer=tok, batch_size=4, **kw).loglikelihood(reqs, disable_tqdm=True)
        fast = FastHFLM(pretrained=model, tokenizer=tok, batch_size=4, **kw)
        batches = count_shared_batches(fast)
        mine = fast.loglikelihood(reqs, disable_tqdm=True)
        for (a, greedy_a), (b, greedy_b) in zip(stock, mine, strict=True):
            assert a == pytest.approx(b, abs=1e-4) and greedy_a == greedy_b
        assert sum(batches) == (3 if max_length is None else 2)  # the long one left for HFLM when truncated


def test_prompt_learning_peft_model_takes_hflms_own_path(world):
    """Prefix tuning builds its own past_key_values: FastHFLM hands it to HFLM and scores as HFLM does."""
    import copy

    from lm_eval.models.huggingface import HFLM
    from peft import PrefixTuningConfig, get_peft_model

    model, tok = world
    peft = get_peft_model(copy.deepcopy(model), PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4))
    reqs = requests("mmlu", "cloze", 2)
    fast = FastHFLM(pretrained=peft, tokenizer=tok, batch_size=8)
    batches = count_shared_batches(fast)
    mine = fast.loglikelihood(reqs, disable_tqdm=True)
    assert mine == HFLM(pretrained=peft, tokenizer=tok, batch_size=8).loglikelihood(reqs, disable_tqdm=True)
    assert batches == []


def lora(model):
    from peft import LoraConfig, get_peft_model

    return get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))


def adapter(model):
    """The Houlsby adapter (strategies/adapter.py) around attention and MLP, with non-zero up projections."""
    import torch

    from strategies.adapter import Adapter, AdapterParams

    model = Adapter().prepare(model, AdapterParams(size=4))
    torch.manual_seed(0)
    for name, p in model.named_parameters():
        if ".adapter.up." in name:
            p.data.normal_(0, 0.05)
    return model


@pytest.mark.parametrize("make", [lora, adapter])
def test_trained_models_share_contexts_and_score_as_hflm(world, make):
    """A LoRA or adapter model passes the context's cache through its own modules: HFLM's scores still."""
    import copy

    from lm_eval.models.huggingface import HFLM

    model, tok = world
    trained = make(copy.deepcopy(model))
    reqs = requests("mmlu", "cloze", 2)
    fast = FastHFLM(pretrained=trained, tokenizer=tok, batch_size=8)
    batches = count_shared_batches(fast)
    mine = fast.loglikelihood(reqs, disable_tqdm=True)
    stock = HFLM(pretrained=trained, tokenizer=tok, batch_size=8).loglikelihood(reqs, disable_tqdm=True)
    base = HFLM(pretrained=model, tokenizer=tok, batch_size=8).loglikelihood(reqs, disable_tqdm=True)
    assert max(abs(a - b) for (a, _), (b, _) in zip(stock, base, strict=True)) > 1e-3  # training moved the scores
    assert [g for _, g in mine] == [g for _, g in stock]
    assert [ll for ll, _ in mine] == pytest.approx([ll for ll, _ in stock], abs=1e-4)
    assert sum(batches) == 3 * 2


def test_generation_is_hflms_own(world):
    from lm_eval.models.huggingface import HFLM

    model, tok = world
    reqs = requests("gsm8k", None, 2, num_fewshot=0, gen_kwargs={"max_gen_toks": 8})
    stock = HFLM(pretrained=model, tokenizer=tok, batch_size=8).generate_until(reqs, disable_tqdm=True)
    fast = FastHFLM(pretrained=model, tokenizer=tok, batch_size=8)
    assert fast.generate_until(reqs, disable_tqdm=True) == stock and len(stock) == 2
    assert set(fast.seconds) == {"generate_until"}


def test_bf16_scores_in_bf16_with_float32_log_softmax_inside_an_outer_autocast(world):
    """eval.bf16: the wrapper's own autocast is bf16 (a disabled one would switch run_suites' off), the
    log-likelihoods move by little (tests/test_bf16_eval.py's 3%, or 1e-3 for a near-certain option's log P near
    0), and float32 stays stock HFLM's."""
    import torch

    model, tok = world
    reqs = requests("mmlu", "cloze", 2)
    fp32 = benchmarks.wrap(model, tok, 8, None)
    assert fp32.mixed_precision_dtype is None and fp32.softmax_dtype is None
    lm = benchmarks.wrap(model, tok, 8, None, bf16=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mine = lm.loglikelihood(reqs, disable_tqdm=True)
    ref = fp32.loglikelihood(reqs, disable_tqdm=True)
    assert [ll for ll, _ in mine] == pytest.approx([ll for ll, _ in ref], rel=0.03, abs=1e-3)
    assert mine != ref
