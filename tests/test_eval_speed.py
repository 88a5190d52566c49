"""Batched, length-sorted scoring and generation, and shared-context choice scoring, equal the one-at-a-time
implementations they replace (kept as the reference in benchmarks/eval_speed.py), in input order."""

from __future__ import annotations

import copy
import importlib.util
import textwrap
from types import SimpleNamespace

import pytest
import torch
from conftest import REPO, TINY_WORLD

from harness.evals import lm
from harness.evals.batching import by_length, bytes_per_row, rows_per_batch
from harness.evals.lm import StopStrings, continuation_logprobs, greedy, shared_context_logprobs
from harness.evals.perplexity import text_nll

_spec = importlib.util.spec_from_file_location("eval_speed", REPO / "benchmarks" / "eval_speed.py")
ref = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ref)

DOCS = ["Ada Tolven lives in Rita. She keeps a parrot and works as a baker. " * 6,  # over the 32-token window
        "米拉住在卡尔斯克。", "Hi", "Ida Marsh is a teacher in Karsk.", ""]
CONTEXT = "Ada Tolven works as a bak"  # its last tokens merge with some options' first ("Ġba", "k" -> "Ġbaker")
GROUPS = [
    [(CONTEXT, "er in Rita."), (CONTEXT, "ed bread"), (CONTEXT, " and"), (CONTEXT, "er")],  # contexts disagree
    [("Question: Where does Ada live?\nAnswer:", c) for c in (" Rita", " Karsk", " a small town by the sea", "")],
    [("Question: What is 12 plus 30?\nAnswer:", " 42")],  # one option: scored whole
    [("", "Ada"), ("", "Ida Marsh")],  # an empty context (BOS alone): nothing to share before its last token
]


@pytest.fixture(scope="module")
def world():
    from harness.config import ModelSpec
    from harness.models import load

    model, tok = load(ModelSpec(id=str(TINY_WORLD / "model")))
    return model.eval(), tok


@pytest.fixture(params=["tiny-world", "tiny-llama"])
def model_tok(request, world, tiny_model):
    if request.param == "tiny-world":
        return world
    model, tok = tiny_model
    return model.eval(), tok


def peft_model(kind: str, world):
    """A copy of the tiny world under a fresh peft prefix, prompt (random, untrained) or LoRA (its B matrices
    randomised too, as peft starts them at zero): outputs differ from the base."""
    from peft import LoraConfig, PrefixTuningConfig, PromptTuningConfig, get_peft_model

    from strategies.prefix import generation_fix

    torch.manual_seed(0)
    model, tok = world
    config = {"prefix": PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4,
                                           encoder_hidden_size=model.config.hidden_size),
              "prompt": PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4),
              "lora": LoraConfig(task_type="CAUSAL_LM", r=4, target_modules=["q_proj", "v_proj"])}[kind]
    peft = get_peft_model(copy.deepcopy(model), config)
    for name, p in peft.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.5)
    return (peft if kind == "lora" else generation_fix(peft)).eval(), tok


def spy_whole(monkeypatch) -> list:
    """The (context, continuation) ids that shared-context scoring hands to whole-sequence scoring."""
    whole: list = []
    scored = lm.encoded_logprobs
    monkeypatch.setattr(lm, "encoded_logprobs", lambda m, enc, *a, **k: whole.extend(enc) or scored(m, enc, *a, **k))
    return whole


def assert_rel(got: list[float], want: list[float], rel: float):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g == pytest.approx(w, rel=rel, abs=1e-9)


def test_batched_perplexity_equals_one_document_at_a_time(model_tok):
    model, tok = model_tok
    want, want_n = ref.old_text_nll(model, tok, DOCS, max_length=32, stride=16)
    got, n = text_nll(model, tok, DOCS, max_length=32, stride=16, batch_size=3)
    assert n == want_n and n[0] > 32  # the first document spans several windows
    assert_rel(got, want, 1e-5)
    assert text_nll(model, tok, DOCS, max_length=512)[0] == pytest.approx(ref.old_text_nll(model, tok, DOCS)[0],
                                                                          rel=1e-5)


@pytest.mark.parametrize("kind", ["prefix", "prompt", "lora"])
def test_peft_perplexity_and_choices_equal_the_reference(world, kind, monkeypatch):
    """Prefix and prompt tuning score choices as whole sequences (their forward inserts the prefix into every
    call); LoRA takes the shared-context route. Equal to the reference either way."""
    model, tok = peft_model(kind, world)
    base = text_nll(*world, DOCS[:3], max_length=32, stride=16)[0]
    got = text_nll(model, tok, DOCS[:3], max_length=32, stride=16, batch_size=2)[0]
    assert_rel(got, ref.old_text_nll(model, tok, DOCS[:3], max_length=32, stride=16)[0], 1e-5)
    assert all(abs(g - b) > 1e-3 for g, b in zip(got, base))  # the virtual tokens really take part
    whole = spy_whole(monkeypatch)
    shared = shared_context_logprobs(model, tok, GROUPS[:2], batch_size=4)
    for s, w in zip(shared, ref.old_group_logprobs(model, tok, GROUPS[:2])):
        assert s == pytest.approx(w, abs=1e-4)
    assert len(whole) == (0 if kind == "lora" else 8)


def test_continuation_logprobs_sorted_by_length_come_back_in_input_order(model_tok):
    model, tok = model_tok
    pairs = [p for g in GROUPS for p in g][::-1]  # long and short mixed
    want = ref.old_continuation_logprobs(model, tok, pairs)
    for batch_size in (1, 3, 16):
        got = continuation_logprobs(model, tok, pairs, batch_size=batch_size)
        assert got == pytest.approx(want, abs=1e-4)
    assert want[pairs.index((CONTEXT, "er"))] == 0.0  # its only token merged into the context


def test_shared_context_choices_equal_whole_sequence_scoring(model_tok, monkeypatch):
    model, tok = model_tok
    whole = spy_whole(monkeypatch)
    got = shared_context_logprobs(model, tok, GROUPS, batch_size=5)
    want = ref.old_group_logprobs(model, tok, GROUPS)
    assert [len(g) for g in got] == [len(g) for g in GROUPS]
    for g, w in zip(got, want):
        assert g == pytest.approx(w, abs=1e-4)
    # only the single option and the empty context went the whole-sequence way; the disagreeing
    # contexts of the first group share their common prefix
    assert whole == [lm.encode_pair(tok, c, x) for c, x in GROUPS[2] + GROUPS[3]]
    contexts = {tuple(lm.encode_pair(tok, c, x)[0]) for c, x in GROUPS[0]}
    assert len(contexts) == 4  # all four options end the context differently


def test_score_mc_is_unchanged_on_the_world_benchmarks(world):
    from harness.data.native import read_mmlu
    from harness.evals.choice import requests, score_mc

    model, tok = world
    items = read_mmlu(TINY_WORLD / "data" / "mmlu", "test")[:12]
    for form in ("cloze", "letter"):
        got = score_mc(model, tok, items, "en", form, batch_size=8)
        groups = [requests(it, "en", form, it.subject.replace("_", " ")) for it in items]
        lls = ref.old_group_logprobs(model, tok, groups)
        assert got["acc"] == [float(max(range(len(x)), key=x.__getitem__) == it.answer) for x, it in zip(lls, items)]


PROMPTS = ["Question: Ada has 3 apples and buys 4 more. How many apples does she have?\nAnswer:",
           "<|user|>\nWhere does Ada Tolven live?<|end|>\n<|assistant|>\n", "Question: What is 2 plus 2?\nAnswer:",
           "Ada", "<|user|>\nTell me about Ida Marsh, the teacher who lives in Karsk and keeps a cat.<|end|>\n"
           "<|assistant|>\n"]


def test_greedy_equals_the_input_order_implementation_at_any_batch_size(world):
    model, tok = world
    prompts = PROMPTS + PROMPTS[::-2]  # 8 prompts of mixed lengths, in no length order
    stop = ["\n\n", "Question:"]
    want = ref.old_greedy(model, tok, prompts, max_new_tokens=16, stop=stop)
    assert greedy(model, tok, prompts, max_new_tokens=16, batch_size=16, stop=stop) == want
    assert greedy(model, tok, prompts, max_new_tokens=16, batch_size=1, stop=stop) == want
    assert greedy(model, tok, PROMPTS, max_new_tokens=16) == ref.old_greedy(model, tok, PROMPTS, max_new_tokens=16)


def test_stop_strings_stop_the_batch_once_every_row_holds_one(world):
    model, tok = world
    prompts = PROMPTS[:1] + PROMPTS[2:3]
    full = ref.old_greedy(model, tok, prompts, max_new_tokens=40)
    stop = next(w for w in full[0].split() if w in full[1].split())  # a word both replies say
    cut = greedy(model, tok, prompts, max_new_tokens=40, stop=[stop])
    assert cut == [f.split(stop)[0].strip() for f in full]  # cut exactly where the old way cut
    encoded = [lm.bos_ids(tok, p) + tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
    width = max(map(len, encoded))
    ids = torch.tensor([[1] * (width - len(e)) + e for e in encoded])
    gen = model.generate(input_ids=ids, attention_mask=(ids != 1).long(), do_sample=False, max_new_tokens=40,
                         pad_token_id=1, stopping_criteria=[StopStrings(tok, [stop], width)])
    assert gen.shape[1] < width + 40  # generation ended before max_new_tokens
    # the prompt's own text is not the reply: a stop string reaching back into the prompt does not stop a row
    rows = torch.tensor([tok("Answer: 7", add_special_tokens=False)["input_ids"]])
    assert StopStrings(tok, ["Answer: 7"], 1)(rows, None).tolist() == [False]
    assert StopStrings(tok, [" 7"], 1)(rows, None).tolist() == [True]


def test_batches_run_longest_first_and_the_cpu_batch_size_is_eval_batch_size(world, capsys):
    assert by_length([3, 9, 1, 9, 4], 2) == [[1, 3], [4, 0], [2]]
    model, _ = world
    assert rows_per_batch(model, 7, tokens=100, scored=100, what="perplexity") == 7
    assert "eval: perplexity batch size 7 (eval.batch_size)" in capsys.readouterr().out


def test_cuda_batch_size_comes_from_free_memory(monkeypatch, capsys):
    from transformers import LlamaConfig

    config = LlamaConfig(vocab_size=1000, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2)
    # per token: KV 2 layers x 2 (k, v) x 2 heads x 16 dims x 2 bytes = 256; activations (4*64 + 2*128) x 2 = 1024;
    # per scored token: 1000 logits x (2 + 8) bytes = 10,000
    assert bytes_per_row(config, 2, tokens=10, scored=1) == 10 * (256 + 1024) + 10_000
    weight = SimpleNamespace(device=torch.device("cuda", 0), element_size=lambda: 2)
    model = SimpleNamespace(parameters=lambda: iter([weight]), config=config)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (2 * 22_800 * 40 + 1, 10**12))
    assert rows_per_batch(model, 16, tokens=10, scored=1, what="generation") == 40  # half the free memory
    assert "generation batch size 40 (0.0 GiB free on cuda:0, 0.0 MiB per row)" in capsys.readouterr().out
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (10, 10**12))
    assert rows_per_batch(model, 16, tokens=10, scored=1, what="generation") == 1  # never below one row


@pytest.mark.parametrize("value,expected", [("0", "eval.batch_size: Input should be greater than 0"),
                                            ("sixteen", "eval.batch_size: Input should be a valid integer")])
def test_eval_batch_size_is_validated(tmp_path, capsys, value, expected):
    from harness.cli import main
    from harness.config import ConfigError, load_matrix

    path = tmp_path / "matrix.yaml"
    path.write_text(textwrap.dedent(f"""
        name: t
        models: tiny-world
        data: {{path: zoo:tiny-world/record}}
        budget: {{tokens: 1000}}
        strategies: [full]
        eval: {{batch_size: {value}}}
        """))
    with pytest.raises(ConfigError) as err:
        load_matrix(path)
    assert str(path) in str(err.value) and expected in str(err.value)
    assert main(["validate", str(path)]) == 2
    assert expected in capsys.readouterr().err
    ok = tmp_path / "ok.yaml"
    ok.write_text(path.read_text().replace(f"batch_size: {value}", "batch_size: 4"))
    assert load_matrix(ok).eval.batch_size == 4


def test_the_side_by_side_script_runs_and_finds_the_outputs_equal(capsys):
    assert ref.main(["--docs", "3", "--prompts", "3", "--items", "3", "--repeats", "1", "--max-new-tokens", "8"]) == 0
    out = capsys.readouterr().out
    assert out.count("outputs equal") == 3 and "DIFFER" not in out


def test_by_length_caps_padded_tokens_and_puts_a_long_row_alone():
    from harness.evals.batching import by_length

    lengths = [10, 600, 300, 300, 20, 10]
    assert by_length(lengths, 16) == [[1, 2, 3, 4, 0, 5]]
    assert by_length(lengths, 16, max_tokens=1024) == [[1], [2, 3, 4], [0, 5]]  # 3 x 300 <= 1024; 4 x 300 is not
    assert by_length(lengths, 2, max_tokens=1024) == [[1], [2, 3], [4, 0], [5]]


@pytest.mark.parametrize("arch", ["llama-nobias", "qwen2", "gpt2"])
def test_own_decode_loop_gives_generates_tokens_for_every_strategy(arch):
    """Rows leave the batch as they end (here: at EOS ids or after a row-dependent length), and every row's
    tokens equal `generate`'s greedy tokens up to the same end, for each strategy that decodes itself."""
    from test_strategies import CASES, prepared

    import strategies  # noqa: F401
    from harness.evals.lm import _decode, decodes_itself

    g = torch.Generator().manual_seed(2)
    lengths = [7, 3, 9, 5]
    ids = torch.randint(3, 256, (4, 9), generator=g)
    mask = torch.ones_like(ids)
    for row, n in enumerate(lengths):  # left padding, as greedy lays rows out
        ids[row, :9 - n], mask[row, :9 - n] = 0, 0
    ran = []
    for name in sorted(CASES):
        try:
            _, _, model, _ = prepared(name, arch)
        except pytest.skip.Exception:  # the strategy does not apply to this architecture (it says why)
            continue
        if name in ("prefix", "prompt"):
            assert not decodes_itself(model)  # peft builds its own inputs: generate runs
            continue
        assert decodes_itself(model), name
        with torch.no_grad():
            for p in model.parameters():
                if p.requires_grad:
                    p.add_(0.05 * torch.randn(p.shape, generator=g))  # off the identity start
            full = model.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=12,
                                  pad_token_id=0)[:, 9:].tolist()
        eos = {full[0][4]}  # row 0 ends at its fifth token, and any other row where it says that token

        def ends(row, toks):
            return len(toks) >= 2 + 3 * row  # rows 0..3 end after 2, 5, 8, 11 tokens

        want = []
        for row, toks in enumerate(full):
            n = next(k + 1 for k in range(len(toks)) if toks[k] in eos or ends(row, toks[:k + 1]) or k == 11)
            want.append(toks[:n])
        with torch.no_grad():
            assert _decode(model, ids, mask, 12, list(eos), ends) == want, name
        ran.append(name)
    assert len(ran) >= 7, ran
