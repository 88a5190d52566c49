"""A matrix runs end to end: complete results, resume, isolated failures, a leaderboard."""

from __future__ import annotations

import json
import os
import shutil
import time

import pytest
from conftest import TINY_WORLD

from harness import store
from harness.cli import main

MATRIX = """
name: e2e
models: {model}
data: {{path: {data}, truncation: drop, group: person}}
budget: {{tokens: 600}}
train: {{batch_size: 4}}
strategies: [full, {{name: lora, params: {{r: 4}}}}]
eval:
  suites: [perplexity, task, benchmarks, safety]
  benchmarks:
    tasks: [{{task: mmlu, data: {world}/mmlu, formulation: cloze}}]
  safety: {world}
  general_text: {world}/general/test.jsonl
  limit: 4
  max_new_tokens: 8
"""

RESULT_KEYS = {"schema", "id", "label", "matrix", "cell", "status", "reason", "env", "total_params",
               "trainable_params", "metrics", "sanity", "wall_seconds", "started_at", "finished_at"}
USAGE_KEYS = {"tokens", "steps", "seconds", "tokens_per_second", "peak_memory_mb", "loss_first", "loss_last"}


def _write(tmp_path, model, text: str):
    data = tmp_path / "record"
    shutil.copytree(TINY_WORLD / "data" / "record", data)
    path = tmp_path / "e2e.yaml"
    path.write_text(text.format(model=model, data=data, world=TINY_WORLD / "data"))
    return path


@pytest.fixture()
def matrix(tmp_path, tiny_model_dir):
    return _write(tmp_path, tiny_model_dir, MATRIX)


@pytest.fixture()
def perplexity_matrix(tmp_path, tiny_model_dir):
    """The same cells scored by the perplexity suite alone: for what a run does with statuses, not with suites."""
    return _write(tmp_path, tiny_model_dir, MATRIX.replace("[perplexity, task, benchmarks, safety]", "[perplexity]"))


def test_matrix_runs_and_every_result_is_complete(matrix, tmp_path):
    out = tmp_path / "results"
    assert main(["run", "--matrix", str(matrix), "--out", str(out), "--in-process"]) == 0
    results = {r["label"]: r for r in store.load_all(out)}
    assert set(results) == {"base", "full", "lora r=4"}
    for label, r in results.items():
        assert r["status"] == "ok", r.get("reason")
        assert RESULT_KEYS <= set(r), RESULT_KEYS - set(r)
        for name in ("ppl_in_domain", "ppl_general", "task_exact_match", "task_rouge_1", "task_bleu", "mmlu_cloze_acc",
                     "refusal_harmful", "refusal_benign"):
            m = r["metrics"][name]
            assert m["ci_low"] <= m["value"] <= m["ci_high"] and m["n"] > 0
        items = store.load_items(out, r["id"])
        assert len(items["task_exact_match"]) == r["metrics"]["task_exact_match"]["n"]
        lists = {k for k, v in items.items() if k not in ("_ids", "_groups") and isinstance(v, list)}
        assert lists == set(items["_ids"])  # every per-item list is stored with its item ids
        assert all(len(items["_ids"][k]) == (len(v[0]) if k.startswith("ppl") else len(v))
                   for k, v in items.items() if k in lists)
        people = {json.loads(x)["person"] for x in (tmp_path / "record" / "test.jsonl").read_text().splitlines()}
        assert set(items["_groups"]["task_exact_match"]) <= people  # data.group: person
        assert set(items["_groups"]) == {"ppl_in_domain", "ppl_in_domain_bpb", "mmlu_cloze_acc",
                                         "mmlu_cloze_acc_norm"} | {
            k for k in lists if k.startswith(("task_", "_task_", "_predictions", "_prompts", "_references"))}
        assert r["metrics"]["task_exact_match"]["ci_method"] == "wilson-clustered"
        assert r["metrics"]["mmlu_cloze_acc"]["groups"] == 3  # the tiny world's three subjects
        assert r["metrics"]["refusal_harmful"]["ci_method"] == "wilson"  # prompts drawn one by one
        assert r["metrics"]["ppl_in_domain"]["ci_method"] == "cluster-bootstrap"
        assert r["metrics"]["ppl_general"]["ci_method"] == "bootstrap"
        assert r["eval_precision"] == "fp32"  # eval.bf16 unset: float32 on CPU, and the cell says so
        if label != "base":
            assert USAGE_KEYS <= set(r["usage"]) and r["usage"]["tokens"] == 600
            assert 0 < r["trainable_params"] <= r["total_params"] and r["artifact_bytes"] > 0
            assert r["sanity"]["logits_differ"], r["sanity"]  # the evaluated model is the trained one
    assert results["lora r=4"]["trainable_params"] < results["full"]["trainable_params"]
    board = (out / "LEADERBOARD.md").read_text()
    rows = [line.split("|")[1].strip() for line in board.splitlines() if line.startswith("| ")]
    assert {"base", "lora r=4"} <= set(rows) and "task EM" in board
    assert not list(out.rglob("*.tmp"))  # atomic writes leave no temp files

    before = {p.name: p.stat().st_mtime_ns for p in (out / "cells").iterdir()}
    assert main(["run", "--matrix", str(matrix), "--out", str(out), "--in-process"]) == 0
    assert before == {p.name: p.stat().st_mtime_ns for p in (out / "cells").iterdir()}  # resumed: nothing re-ran


@pytest.mark.slow
def test_data_no_cell_can_train_on_stops_the_run_before_any_cell(matrix, tmp_path, capsys):
    train = tmp_path / "record" / "train.jsonl"
    lines = train.read_text().splitlines()  # every training row too long for max_length (truncation: drop)
    train.write_text("\n".join(json.dumps({**json.loads(x), "input": "word " * 300}) for x in lines) + "\n")
    out = tmp_path / "results"
    assert main(["run", "--matrix", str(matrix), "--out", str(out)]) == 2
    assert "no training examples left" in capsys.readouterr().err
    assert not out.exists()


def test_a_crashing_cell_is_recorded_and_the_matrix_goes_on(perplexity_matrix, tmp_path):
    matrix = perplexity_matrix
    out = tmp_path / "results"
    (out / "data_report.json").mkdir(parents=True)  # a failure only training cells meet, after preflight
    assert main(["run", "--matrix", str(matrix), "--out", str(out)]) == 1  # isolated child processes
    results = {r["label"]: r for r in store.load_all(out)}
    assert results["base"]["status"] == "ok"
    for label in ("full", "lora r=4"):
        assert results[label]["status"] == "failed"
        assert "Is a directory" in results[label]["reason"]
    assert "failed" in (out / "LEADERBOARD.md").read_text()
    for r in results.values():  # each isolated cell forked from the run's zygote, its crash in its own log
        log = (out / "logs" / f"{r['id']}.log").read_text()
        assert log.startswith("cell process ") and "forked from the run's zygote" in log.splitlines()[0]
    assert "Is a directory" in (out / "logs" / f"{results['full']['id']}.log").read_text()
    (out / "data_report.json").rmdir()  # fixed: the next run retries only the failed cells
    assert main(["run", "--matrix", str(matrix), "--out", str(out), "--in-process"]) == 0
    assert {r["status"] for r in store.load_all(out)} == {"ok"}
    assert json.loads((out / "cells" / f"{results['base']['id']}.json").read_text()) == results["base"]


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "cells" / "x.json"
    store.write_json_atomic(path, {"a": 1})
    with pytest.raises(TypeError):
        store.write_json_atomic(path, {"a": object()})
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in path.parent.iterdir()] == ["x.json"]


def test_zygote_children_report_exit_codes_and_die_when_killed(tmp_path):
    """A forked child's exit status comes back as Popen's would (1 for a crash, -9 for SIGKILL); none outlives
    the zygote's close."""
    from harness.zygote import Zygote

    with Zygote() as zygote:
        crash = zygote.start([str(tmp_path / "missing.cell.json"), str(tmp_path)], dict(os.environ),
                             tmp_path / "crash.log")
        assert crash.wait() == 1
        assert "FileNotFoundError" in (tmp_path / "crash.log").read_text()
        os.mkfifo(tmp_path / "fifo")  # reading the cell file blocks: a child that never ends by itself
        hung = zygote.start([str(tmp_path / "fifo"), str(tmp_path)], dict(os.environ), tmp_path / "hung.log")
        time.sleep(0.5)
        assert hung.poll() is None
        hung.kill()
        assert hung.wait() == -9
