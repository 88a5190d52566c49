"""A base model's evaluation is reused across matrices, and any change to what it read is a miss."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import TINY_WORLD

from harness import basecache, cell, matrix, store
from harness.cli import main

MATRIX = """
name: {name}
models: {model}
data: {{path: {data}, truncation: drop}}
budget: {{tokens: {tokens}}}
train: {{batch_size: 4}}
strategies: [bitfit]
eval:
  suites: [perplexity]
  general_text: {general}
  limit: 4
"""


@pytest.fixture()
def world(tmp_path, tiny_model_dir, monkeypatch):
    """A model folder and data of the test's own (so they can change), a HARNESS_HOME, and the cells that ran."""
    monkeypatch.setenv("HARNESS_HOME", str(tmp_path / "home"))
    shutil.copytree(tiny_model_dir, tmp_path / "model")
    shutil.copytree(TINY_WORLD / "data" / "record", tmp_path / "record")
    shutil.copy(TINY_WORLD / "data" / "general" / "test.jsonl", tmp_path / "general.jsonl")
    ran = []
    real = cell.run_cell
    monkeypatch.setattr(cell, "run_cell", lambda c, *a, **k: ran.append(c.label) or real(c, *a, **k))
    return tmp_path, ran


def _run(tmp_path, name: str, tokens: int = 200, *flags: str) -> int:
    path = tmp_path / f"{name}.yaml"
    path.write_text(MATRIX.format(name=name, model=tmp_path / "model", data=tmp_path / "record", tokens=tokens,
                                  general=tmp_path / "general.jsonl"))
    return main(["run", "--matrix", str(path), "--out", str(tmp_path / "results" / name), "--in-process", *flags])


def _base(tmp_path, name: str) -> dict:
    return next(r for r in store.load_all(tmp_path / "results" / name) if r["cell"]["strategy"] == matrix.BASE)


def test_a_second_matrix_reuses_the_base_evaluation_byte_for_byte(world):
    tmp_path, ran = world
    assert _run(tmp_path, "first") == 0
    assert ran == ["base", "bitfit"]
    ran.clear()
    assert _run(tmp_path, "second", 400) == 0  # another budget: the same base evaluation
    assert ran == ["bitfit"]  # the base cell never ran: no model was loaded for it, no forward
    first, second = _base(tmp_path, "first"), _base(tmp_path, "second")
    assert first["id"] == second["id"]
    assert second["reused_from"]["matrix"] == "first" and second["matrix"] == "second"
    assert second["cell"]["budget"]["tokens"] == 400 and second["metrics"] == first["metrics"]
    items = [(tmp_path / "results" / n / "items" / f"{first['id']}.json").read_bytes() for n in ("first", "second")]
    assert items[0] == items[1]
    assert store.damage(tmp_path / "results" / "second", second["id"]) is None
    board = (tmp_path / "results" / "second" / "LEADERBOARD.md").read_text("utf-8")
    assert f"**Base model results reused** from matrix `first` (cache key `{second['reused_from']['key'][:12]}`)" \
        in board
    ran.clear()
    assert _run(tmp_path, "third", 400, "--no-base-cache") == 0
    assert ran == ["base", "bitfit"]


def _cells(tmp_path, name="m"):
    path = tmp_path / f"{name}.yaml"
    path.write_text(MATRIX.format(name=name, model=tmp_path / "model", data=tmp_path / "record", tokens=200,
                                  general=tmp_path / "general.jsonl"))
    from harness.config import load_matrix

    return matrix.expand(load_matrix(path), tmp_path)


def test_a_changed_weight_file_data_file_or_package_version_misses(world, monkeypatch):
    tmp_path, ran = world
    base = _cells(tmp_path)[0]
    before = basecache.key(base)
    assert basecache.key(base) == before  # stable
    weights = tmp_path / "model" / "model.safetensors"
    original = weights.read_bytes()
    weights.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    assert basecache.key(base) != before
    weights.write_bytes(original)
    assert basecache.key(base) == before
    general = tmp_path / "general.jsonl"
    general.write_text(general.read_text("utf-8") + json.dumps({"text": "one more document"}) + "\n", "utf-8")
    changed_data = basecache.key(base)
    assert changed_data != before
    versions = {**matrix.fingerprint(), "transformers": "0.0.0"}
    monkeypatch.setattr(matrix, "fingerprint", lambda: versions)
    assert basecache.key(_cells(tmp_path)[0]) not in (before, changed_data)


def test_a_changed_data_file_reevaluates_the_base(world):
    tmp_path, ran = world
    assert _run(tmp_path, "first") == 0
    general = tmp_path / "general.jsonl"
    general.write_text(general.read_text("utf-8") + json.dumps({"text": "one more document"}) + "\n", "utf-8")
    ran.clear()
    assert _run(tmp_path, "second", 400) == 0
    assert ran == ["base", "bitfit"] and "reused_from" not in _base(tmp_path, "second")


def test_a_damaged_entry_is_ignored_and_replaced(world):
    tmp_path, ran = world
    assert _run(tmp_path, "first") == 0
    base = _cells(tmp_path, "first")[0]
    entry = basecache.folder() / basecache.key(base)
    path = store.cell_file(entry, base.id)
    cached = json.loads(path.read_text("utf-8"))
    cached["metrics"]["ppl_in_domain"]["value"] = 1.0  # edited: the checksum no longer holds
    path.write_text(json.dumps(cached), "utf-8")
    assert store.damage(entry, base.id).code == "checksum"
    ran.clear()
    assert _run(tmp_path, "second", 400) == 0
    assert ran == ["base", "bitfit"]
    assert store.damage(entry, base.id) is None and store.load(entry, base.id)["matrix"] == "second"
