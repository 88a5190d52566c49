"""A base cell's id is its model and evaluation only: budget, training, tuning and strategies leave it alone."""

from __future__ import annotations

from pathlib import Path

from harness.config import MatrixSpec
from harness.matrix import BASE, expand
from harness.report.frame import current_set

MATRIX = {"name": "m", "models": ["tiny-world"], "data": {"path": "zoo:tiny-world/record"},
          "budget": {"tokens": 600}, "strategies": ["full", {"name": "lora", "params": {"r": 4}}],
          "eval": {"suites": ["perplexity"], "limit": 4}}


def _ids(**changes) -> dict[str, str]:
    spec = MatrixSpec.model_validate({**MATRIX, **changes})
    return {c.label: c.id for c in expand(spec, root=Path("."))}


def test_budget_train_tuning_and_strategies_leave_the_base_id_alone():
    first = _ids()
    second = _ids(budget={"tokens": 1200, "max_seconds": 60.0}, train={"batch_size": 2, "learning_rate": 1e-3},
                  tuning={"lr_multipliers": [0.3, 1.0]}, strategies=["full", "bitfit"], name="other")
    assert first[BASE] == second[BASE]
    assert first["full"] != second["full"]  # a trained cell's id keeps every key


def test_a_changed_eval_key_or_model_changes_the_base_id():
    first = _ids()
    assert _ids(eval={"suites": ["perplexity"], "limit": 5})[BASE] != first[BASE]
    assert _ids(eval={"suites": ["perplexity", "task"], "limit": 4})[BASE] != first[BASE]
    assert _ids(models=[{"id": "tiny-world", "dtype": "bfloat16"}])[BASE] != first[BASE]
    assert _ids(data={"path": "zoo:tiny-world/record", "max_length": 128})[BASE] != first[BASE]


def test_carving_the_tuning_split_changes_the_base_id_only_when_contamination_is_scored():
    plain, tuned = _ids(), _ids(tuning={"lr_multipliers": [1.0]})  # tuning sets data.tuning: 0.1
    assert plain[BASE] == tuned[BASE]
    strict = {"path": "zoo:tiny-world/record", "drop_contaminated": True}
    assert _ids(data=strict)[BASE] != _ids(data=strict, tuning={"lr_multipliers": [1.0]})[BASE]


def _result(cell, finished: str) -> dict:
    return {"id": cell.id, "cell": cell.model_dump(mode="json"), "status": "ok", "finished_at": finished,
            "env": {"packages": {}}}


def test_a_base_result_kept_from_an_earlier_budget_stays_in_the_current_set():
    old = expand(MatrixSpec.model_validate(MATRIX), root=Path("."))
    new = expand(MatrixSpec.model_validate({**MATRIX, "budget": {"tokens": 900}}),
                 root=Path("."))
    results = [_result(old[0], "2026-01-01T00:00:00"), *(_result(c, "2026-01-02T00:00:00") for c in new[1:]),
               *(_result(c, "2026-01-01T00:00:00") for c in old[1:])]
    current, left_out = current_set(results)
    assert {r["id"] for r in current} == {old[0].id} | {c.id for c in new[1:]}
    assert {r["id"] for r in left_out} == {c.id for c in old[1:]}
