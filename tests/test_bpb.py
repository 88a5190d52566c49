"""Bits per byte: the tokenizer-independent twin of per-token perplexity, and the gate across tokenizers."""

from __future__ import annotations

import math

import pytest
import torch
from fake_results import binary, ppl_items, save_cell

from harness.cli import main
from harness.data import scored_pair
from harness.evals import stats
from harness.evals.perplexity import completion_scores, document_bytes, fingerprint, text_nll
from harness.report import deltas

TEXTS = ["Ada lives in Karsk. She keeps 3 shells.", "艾达住在卡尔斯克。她有三个贝壳。", "Mixed: Ada 住在 Karsk. " * 20]


@pytest.fixture(scope="module")
def byte_model():
    """A byte-level tokenizer (one token per UTF-8 byte, no merges) and a tiny random Llama over its 258 ids."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))},
                              merges=[]))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tk.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>", pad_token="</s>")
    torch.manual_seed(1)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    return LlamaForCausalLM(config).eval(), tok


def _bpb(nll, nbytes) -> float:
    return sum(nll) / math.log(2) / sum(nbytes)


def test_general_text_counts_the_same_utf8_bytes_under_two_tokenizers(tiny_model, byte_model):
    world_nll, world_n = text_nll(*tiny_model, TEXTS, max_length=64, stride=32)  # the third text is windowed
    byte_nll, byte_n = text_nll(*byte_model, TEXTS, max_length=64, stride=32)
    world_bytes, byte_bytes = document_bytes(tiny_model[1], TEXTS), document_bytes(byte_model[1], TEXTS)
    assert world_bytes == byte_bytes == [len(t.encode("utf-8")) for t in TEXTS]
    assert world_bytes[1] == 48 and len(TEXTS[1]) == 16  # UTF-8 bytes, not characters: 3 per Chinese character
    assert world_n != byte_n and byte_n == byte_bytes  # per-token counts differ; a byte tokenizer's are the bytes
    for nll, nbytes in ((world_nll, world_bytes), (byte_nll, byte_bytes)):
        iv = stats.interval(stats.BitsPerByte(nll, nbytes))
        assert iv["value"] == pytest.approx(_bpb(nll, nbytes), rel=1e-12)
        assert iv["ci_low"] <= iv["value"] <= iv["ci_high"] and iv["n"] == len(TEXTS)
    # one token per byte: bits per byte is log2 of the per-token perplexity
    assert _bpb(byte_nll, byte_bytes) == pytest.approx(math.log2(stats.perplexity_ci(byte_nll, byte_n)[0]))


def test_completion_bpb_leaves_out_special_tokens_and_counts_the_kept_text(tiny_model, byte_model):
    reply = "艾达住在卡尔斯克。"
    for model, tok in (tiny_model, byte_model):
        (nll, counts), bpb = completion_scores(model, tok, [("Where does Ada live?\n", reply + tok.eos_token)])
        assert bpb[1] == [len(reply.encode("utf-8"))] == [27]  # the end-of-turn token has no bytes of the reply
        assert 0 < bpb[0][0] < nll[0]  # nor is its NLL counted
    (_, world_counts), _ = completion_scores(*tiny_model, [("Q\n", reply)])
    (_, byte_counts), _ = completion_scores(*byte_model, [("Q\n", reply)])
    assert byte_counts == [27] and world_counts != byte_counts


def test_completion_cut_at_max_length_counts_the_bytes_of_the_kept_tokens(tiny_model):
    model, tok = tiny_model
    ex = {"id": "a", "messages": [{"role": "user", "content": "Where does Ada live?"},
                                  {"role": "assistant", "content": "艾达住在卡尔斯克。" * 6}]}
    prompt, completion = scored_pair(tok, ex, "auto", max_length=16)
    assert completion == "艾达住在卡尔斯克。\ufffd"  # cut inside a character: its stray bytes decode to U+FFFD
    (nll, counts), bpb = completion_scores(model, tok, [(prompt, completion)])
    assert bpb[1] == [27] and 0 < bpb[0][0] < nll[0]  # the 9 whole characters; not U+FFFD, a byte the text lacks
    prompt, completion = scored_pair(tok, ex, "auto", max_length=512)  # uncut: the reply and `<|end|>\n`
    (nll, counts), bpb = completion_scores(model, tok, [(prompt, completion)])
    assert completion.endswith("<|end|>\n") and bpb[1] == [6 * 27 + 1] and bpb[0][0] < nll[0]


def test_fingerprint_tells_tokenizers_apart(tiny_model, byte_model):
    a, b = fingerprint(tiny_model[1]), fingerprint(byte_model[1])
    assert a["vocab_size"] == 3072 and b["vocab_size"] == 258 and a["sha256"] != b["sha256"]
    assert fingerprint(tiny_model[1]) == a


def test_bpb_pairs_on_byte_counts_and_ppl_refuses_other_token_counts():
    nll_a, nll_b, nbytes = [10.0, 20.0, 15.0], [12.0, 24.0, 18.0], [10, 20, 15]
    a = deltas.Side([nll_a, nbytes], ["x", "y", "z"], bpb=True)
    b = deltas.Side([nll_b, nbytes], ["x", "y", "z"], bpb=True)
    d = deltas.difference({"value": 0, "lo": 0, "hi": 0}, {"value": 0, "lo": 0, "hi": 0}, a, b)
    assert d["paired"] and d["kind"] == "bits per byte"
    assert d["delta"] == pytest.approx((sum(nll_b) - sum(nll_a)) / math.log(2) / sum(nbytes))
    seeds = deltas.seed_scores([{"ppl_general_bpb": [nll_a, nbytes]}], "ppl_general_bpb")
    assert seeds.bpb and not deltas.seed_scores([{"ppl_general": [nll_a, nbytes]}], "ppl_general").bpb


TOK_A = {"class": "Qwen2TokenizerFast", "vocab_size": 151665, "sha256": "a" * 64}
TOK_B = {"class": "GPT2TokenizerFast", "vocab_size": 49152, "sha256": "b" * 64}
N = 300


def _bpb_items(scale: float, seed: int) -> list[list]:
    nll, _ = ppl_items(scale, seed=seed)
    return [nll, [4 * c for c in ppl_items(1.0)[1]]]  # the same documents' bytes on every side


def _folder(d, model: str, tok: dict, ppl_scale: float, bpb_scale: float) -> None:
    """A base and a lora cell; per-token perplexity scaled by `ppl_scale`, bits per byte by `bpb_scale`."""
    for label, strategy, seed, params in (("base", "base", 0, None), ("lora r=4", "lora", 1, {"r": 4})):
        save_cell(d, label, strategy, {"task_exact_match": binary(0.8, N, 1),
                                       "ppl_general": ppl_items(ppl_scale * (1.0 + 0.2 * seed), seed=seed),
                                       "ppl_general_bpb": _bpb_items(bpb_scale * (1.0 + 0.2 * seed), seed)},
                  params=params, model=model, trainable=4096 if params else 0, tokenizer=tok)


def test_compare_across_tokenizers_gates_bits_per_byte(tmp_path, capsys):
    base, same, worse = tmp_path / "qwen", tmp_path / "smol", tmp_path / "smol-worse"
    _folder(base, "Qwen/Qwen2.5-0.5B", TOK_A, 1.0, 1.0)
    _folder(same, "HuggingFaceTB/SmolLM2-135M", TOK_B, 0.5, 1.0)  # fewer, larger tokens: a "better" PPL
    assert main(["compare", str(base), str(same)]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| ") and "ppl_general " in line]
    assert len(rows) == 2 and all("not gated: different tokenizers (per-token perplexity is not comparable); "
                                  "gated on ppl_general_bpb" in r and "not comparable" in r for r in rows)
    assert "family: task_exact_match, ppl_general, ppl_general_bpb" in out and "different tokenizers" in out
    bpb_row = next(line for line in out.splitlines() if "ppl_general_bpb" in line and "lora" in line)
    assert "indistinguishable" in bpb_row and "not gated" not in bpb_row
    _folder(worse, "HuggingFaceTB/SmolLM2-135M", TOK_B, 0.5, 1.3)  # a planted bits-per-byte regression
    assert main(["compare", str(base), str(worse), "--tolerance", "0.01"]) == 1
    bpb_row = next(line for line in capsys.readouterr().out.splitlines() if "ppl_general_bpb" in line
                   and "lora" in line)
    assert "regressed" in bpb_row


def test_compare_within_one_tokenizer_keeps_gating_perplexity(tmp_path, capsys):
    base, cand = tmp_path / "a", tmp_path / "b"
    _folder(base, "Qwen/Qwen2.5-0.5B", TOK_A, 1.0, 1.0)
    _folder(cand, "Qwen/Qwen2.5-0.5B-Instruct", TOK_A, 1.3, 1.0)
    assert main(["compare", str(base), str(cand), "--tolerance", "0.01"]) == 1
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if "ppl_general " in line and "lora" in line)
    assert "regressed" in row and "not comparable" not in out


def test_leaderboard_header_names_each_models_tokenizer(tmp_path):
    from harness.report.leaderboard import header

    results = [save_cell(tmp_path, "base", "base", {"ppl_general": ppl_items(1.0)}, model="m", tokenizer=TOK_A)]
    line = next(x for x in header(results, tmp_path, "t") if x.startswith("- **Base model:**"))
    assert "`m` (tokenizer Qwen2TokenizerFast, 151,665 tokens)" in line


def test_a_models_caveat_is_read_from_its_provenance_and_carried_to_both_reports(tmp_path, capsys):
    """Qwen's "quantized twice" comes from the provenance.json its fetch wrote beside the model folder, is recorded
    per cell, and both the leaderboard header and the gate's verdict say it beside that model."""
    import json

    from harness import models
    from harness.config import ModelSpec
    from harness.report.leaderboard import header

    folder = tmp_path / "zoo" / "qwen" / "model"
    folder.mkdir(parents=True)
    assert models.caveat(ModelSpec(id=str(folder))) is None  # no provenance: nothing to say
    (folder.parent / "provenance.json").write_text(json.dumps({"caveat": "quantized twice"}), encoding="utf-8")
    assert models.caveat(ModelSpec(id=str(folder))) == "quantized twice"
    assert models.caveat(ModelSpec(id="Org/hub-model")) is None

    base, cand = tmp_path / "smol", tmp_path / "qwen"
    _folder(base, "HuggingFaceTB/SmolLM2-135M", TOK_B, 1.0, 1.0)
    for label, strategy, seed, params in (("base", "base", 0, None), ("lora r=4", "lora", 1, {"r": 4})):
        items = {"task_exact_match": binary(0.8, N, 1), "ppl_general_bpb": _bpb_items(1, seed)}
        save_cell(cand, label, strategy, items, params=params, model="qwen", trainable=4096 if params else 0,
                  tokenizer=TOK_A, model_caveat="quantized twice")
    main(["compare", str(base), str(cand)])
    assert "- note: candidate model `qwen`: quantized twice" in capsys.readouterr().out
    from harness.report.frame import load_results

    lines = header(load_results(cand), cand, "t")
    assert "- **⚠ Model:** `qwen`: quantized twice" in lines
    assert not any("⚠ Model" in x for x in header(load_results(base), base, "t"))
