"""Stored results verify or are refused: checksums, damage named and moved aside (never deleted), then re-run."""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile

import pytest
from conftest import TINY_WORLD
from fake_results import binary, ppl_items, save_cell

from harness import store
from harness.cli import main
from harness.runner import set_aside_damaged

N = 40


@pytest.fixture()
def folder(tmp_path):
    d = tmp_path / "m"
    base = save_cell(d, "base", "base", {"task_exact_match": binary(0.2, N, 0), "ppl_general": ppl_items(1.0)})
    lora = save_cell(d, "lora r=4", "lora", {"task_exact_match": binary(0.7, N, 1), "ppl_general": ppl_items(1.1)},
                     params={"r": 4}, trainable=64)
    return d, base["id"], lora["id"]


def _edit(path, change):
    obj = json.loads(path.read_text())
    change(obj)
    path.write_text(json.dumps(obj))


def _legacy_without_metrics(path):
    def drop(obj):  # an old-style file: no checksum to catch the edit, so the metrics check must
        del obj["sha256"], obj["items_sha256"]
        obj["metrics"] = {k: v for k, v in obj["metrics"].items() if not k.startswith("ppl_")}
    _edit(path, drop)


DAMAGE = {  # name -> (how to damage the lora cell's files, the code damage() gives)
    "truncated": (lambda c, i: c.write_bytes(c.read_bytes()[:200]), "not-json"),
    "empty": (lambda c, i: c.write_bytes(b""), "empty"),
    "garbage": (lambda c, i: c.write_bytes(os.urandom(300)), "not-json"),
    "non_object": (lambda c, i: c.write_text("[1, 2, 3]"), "not-a-cell"),
    "edited_metric": (lambda c, i: _edit(c, lambda o: o["metrics"]["task_exact_match"].update(value=0.99)),
                      "checksum"),
    "metrics_removed": (lambda c, i: _edit(c, lambda o: o.update(metrics={})), "checksum"),
    "items_missing": (lambda c, i: i.unlink(), "no-items"),
    "items_edited": (lambda c, i: i.write_text(i.read_text().replace("1.0", "0.0", 1)), "items-checksum"),
    "legacy_metrics_missing": (lambda c, i: _legacy_without_metrics(c), "no-metrics"),
}


def test_a_saved_result_carries_both_checksums_and_verifies(folder):
    d, base_id, lora_id = folder
    result = store.load(d, lora_id)
    assert result["sha256"] == store.content_sha256(result) and len(result["items_sha256"]) == 64
    assert store.damage(d, base_id) is None and store.damage(d, lora_id) is None and store.verified(result)


@pytest.mark.parametrize("name", DAMAGE)
def test_damage_is_named_and_leaderboard_and_compare_refuse_it(folder, tmp_path, capsys, name):
    d, _, lora_id = folder
    other = tmp_path / "other"
    shutil.copytree(d, other)
    cell, items = store.cell_file(d, lora_id), store.items_file(d, lora_id)
    damage, code = DAMAGE[name]
    damage(cell, items)
    found = store.damage(d, lora_id)
    assert found is not None and found.code == code
    assert main(["leaderboard", str(d), "--no-plots"]) == 2
    err = capsys.readouterr().err
    assert str(items if code == "items-checksum" else cell) in err and "refusing to report it" in err
    assert not (d / "LEADERBOARD.md").exists()
    for args in ([str(other), str(d)], [str(d), str(other)]):  # refused as candidate and as baseline
        assert main(["compare", *args]) == 2
        assert str(items if code == "items-checksum" else cell) in capsys.readouterr().err


def test_quarantine_moves_result_items_and_logs_aside_and_deletes_nothing(folder):
    d, base_id, lora_id = folder
    (d / "logs").mkdir()
    (d / "logs" / f"{lora_id}.log").write_text("the log")
    (d / "logs" / f"{lora_id}.progress.jsonl").write_text("{}\n")
    before = {p.relative_to(d): p.read_bytes() for p in d.rglob("*") if p.is_file() and lora_id in p.name}
    base_bytes = store.cell_file(d, base_id).read_bytes()
    dest = store.quarantine(d, lora_id, "checksum")
    assert dest.parent == d / "aside" and dest.name.endswith("Z-checksum") and dest.name[:8].isdigit()
    assert {p.relative_to(dest): p.read_bytes() for p in dest.rglob("*") if p.is_file()} == before
    assert not [p for p in d.rglob("*") if lora_id in p.name and "aside" not in p.parts]
    assert store.cell_file(d, base_id).read_bytes() == base_bytes
    assert store.quarantine(d, lora_id, "again/../x").name.endswith("-again-..-x")  # one path component


def test_results_written_before_checksums_are_read_and_said_unverified(folder, capsys):
    d, base_id, lora_id = folder
    for cell_id in (base_id, lora_id):
        _edit(store.cell_file(d, cell_id), lambda o: [o.pop("sha256"), o.pop("items_sha256")])
        assert store.damage(d, cell_id) is None
    assert main(["leaderboard", str(d), "--no-plots"]) == 0
    assert f"2 result(s) in {d} predate checksums and were read unverified" in capsys.readouterr().err


def test_set_aside_names_each_damaged_file_and_leaves_the_rest(folder):
    d, base_id, lora_id = folder
    store.cell_file(d, lora_id).write_text('{"id": "trunc')
    (d / "cells" / "stray.json").write_text("not json")
    said = []
    assert sorted(set_aside_damaged(d, said.append)) == sorted([lora_id, "stray"])
    assert any(str(store.cell_file(d, lora_id)) in s and "runs again" in s for s in said)
    assert store.stored_ids(d) == [base_id] and len(list((d / "aside").rglob("*.json"))) == 3  # cell, items, stray


MATRIX = """
name: integrity
models: {model}
data: {{path: {data}}}
budget: {{tokens: 400}}
train: {{batch_size: 4}}
strategies: [full, {{name: lora, params: {{r: 4}}}}]
eval: {{suites: [perplexity], limit: 4}}
"""


def test_a_corrupted_cell_is_moved_aside_and_rerun_the_others_stay_byte_identical(tmp_path, tiny_model_dir,
                                                                                   monkeypatch, capsys):
    scratch = tmp_path / "tmp"  # every temporary folder of the run lands here: none may be left
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    path = tmp_path / "m.yaml"
    path.write_text(MATRIX.format(model=tiny_model_dir, data=TINY_WORLD / "data" / "record"))
    out = tmp_path / "out"
    assert main(["run", "--matrix", str(path), "--out", str(out), "--in-process"]) == 0
    assert list(scratch.iterdir()) == []
    by_label = {r["label"]: r for r in store.load_all(out)}
    victim = store.cell_file(out, by_label["full"]["id"])
    damaged = victim.read_bytes()[:-40]
    victim.write_bytes(damaged)
    others = {p: p.read_bytes() for p in [*(out / "cells").glob("*.json"), *(out / "items").glob("*.json")]
              if by_label["full"]["id"] not in p.name}
    capsys.readouterr()

    assert main(["run", "--matrix", str(path), "--out", str(out), "--in-process"]) == 0
    said = capsys.readouterr().out
    assert f"damaged result: {victim}: not valid JSON" in said and "1 to run" in said
    assert {p: p.read_bytes() for p in others} == others
    rerun = store.load(out, by_label["full"]["id"])
    assert rerun["status"] == "ok" and store.damage(out, rerun["id"]) is None
    assert [p.read_bytes() for p in (out / "aside").rglob(victim.name) if p.parent.name == "cells"] == [damaged]
    assert list(scratch.iterdir()) == []


def test_a_folder_that_cannot_be_written_is_named_and_nothing_is_left_half_written(tmp_path, monkeypatch, capsys):
    path = tmp_path / "cells" / "x.json"
    store.write_json_atomic(path, {"a": 1})
    real_fsync = os.fsync

    def full(fd):
        if os.path.basename(os.readlink(f"/proc/self/fd/{fd}")).startswith(".x.json."):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(store.StoreError, match=f"{path.parent}: cannot write x.json .No space left on device"):
        store.write_json_atomic(path, {"a": 2})
    assert json.loads(path.read_text()) == {"a": 1} and [p.name for p in path.parent.iterdir()] == ["x.json"]
    monkeypatch.undo()

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    matrix = tmp_path / "m.yaml"
    matrix.write_text(MATRIX.format(model=TINY_WORLD / "model", data=TINY_WORLD / "data" / "record"))
    assert main(["run", "--matrix", str(matrix), "--out", str(blocker / "out")]) == 2
    err = capsys.readouterr().err
    assert f"harness: {blocker / 'out'}: cannot write the results folder" in err and "Traceback" not in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_results_folder_is_named(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o555)
    matrix = tmp_path / "m.yaml"
    matrix.write_text(MATRIX.format(model=TINY_WORLD / "model", data=TINY_WORLD / "data" / "record"))
    try:
        assert main(["run", "--matrix", str(matrix), "--out", str(out)]) == 2
    finally:
        out.chmod(0o755)
    assert f"{out}: cannot write the results folder" in capsys.readouterr().err
