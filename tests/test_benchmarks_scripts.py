"""The scripts under benchmarks/: the fair evaluation benchmark runs end to end, the GPU script's CPU-safe parts."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest
from conftest import REPO


def script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def env(tmp_path) -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), "HARNESS_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}


@pytest.mark.slow
def test_eval_overhead_tiny_runs_and_both_sides_agree(tmp_path):
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "eval_overhead.py"), "--suite", "tiny",
                           "--limit", "2", "--bench-limit", "1", "--repeats", "1"],
                          env=env(tmp_path), capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    lines = done.stdout.splitlines()
    for suite in ("perplexity", "task", "benchmarks", "safety", "**total**"):
        assert any(line.startswith(f"| {suite} |") for line in lines), done.stdout
    assert any(line.startswith("ratio harness / reference: wall ") and "CPU" in line for line in lines), done.stdout
    assert "per-item results agree on 4 suites" in done.stdout
    assert "not captured" not in done.stdout  # the harness's lm-eval responses were compared too


def test_disagreements_flag_each_kind_of_difference():
    ev = script("eval_overhead")
    ours = {"ppl_general": ([10.0, 20.0], [5, 6]), "task_exact_match": [1.0, 0.0], "_predictions": ["a", "b"],
            "_refusal_benign_reply_ppl": [1.5, None]}
    assert ev.disagreements(ours, ours) == []
    assert ev.disagreements(ours, {**ours, "ppl_general": ([10.0005, 20.0], [5, 6])}) == []  # 5e-5 relative
    assert ev.disagreements(ours, {**ours, "ppl_general": ([10.01, 20.0], [5, 6])}) == [
        "ppl_general: NLLs differ beyond 0.0001 relative at items [0] (or token counts differ)"]
    assert ev.disagreements(ours, {**ours, "ppl_general": ([10.0, 20.0], [5, 7])})  # a token count differs
    assert ev.disagreements(ours, {**ours, "_predictions": ["a", "c"]}) == [
        "_predictions: item 1 differs (2 vs 2 items)"]
    assert ev.disagreements(ours, {**ours, "_refusal_benign_reply_ppl": [1.5, 2.0]})  # scored vs empty reply
    assert ev.disagreements({}, {"task_bleu": [1.0]}) == ["task_bleu: missing on the harness side"]
    sample = {"filter": "none", "doc_id": 0, "resps": [[[-1.25, False]], [[-2.5, True]]]}
    theirs = {"_samples": {"mmlu_x": [sample]}}
    assert ev.disagreements({}, theirs, {"mmlu_x": [sample]}) == []
    moved = {**sample, "resps": [[[-1.26, False]], [[-2.5, True]]]}
    assert ev.disagreements({}, theirs, {"mmlu_x": [moved]})[0].startswith("benchmarks mmlu_x doc 0: responses differ")


def test_eval_overhead_table_takes_medians_and_sums_them():
    ev = script("eval_overhead")
    times = {"task": {"harness": [(1.0, 0.5), (3.0, 1.5), (2.0, 1.0)], "reference": [(4.0, 2.0)] * 3},
             "safety": {"harness": [(1.0, 1.0)] * 3, "reference": [(2.0, 2.0), (6.0, 6.0), (4.0, 4.0)]}}
    rows, wall, cpu = ev.table(times)
    assert rows[2] == "| task | 2.00 | 4.00 | 0.50x | 1.00 | 2.00 | 0.50x |"
    assert rows[3] == "| safety | 1.00 | 4.00 | 0.25x | 1.00 | 4.00 | 0.25x |"
    assert rows[4] == "| **total** | 3.00 | 8.00 | 0.38x | 2.00 | 6.00 | 0.33x |"
    assert (wall, cpu) == (3 / 8, 2 / 6)


def test_eval_overhead_rejects_bad_arguments(capsys):
    ev = script("eval_overhead")
    with pytest.raises(SystemExit) as e:
        ev.main(["--suite", "tiny", "--repeats", "0"])
    assert e.value.code == 2 and "--repeats must be at least 1" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        ev.main(["--suite", "llama"])
    assert e.value.code == 2 and "invalid choice: 'llama'" in capsys.readouterr().err
