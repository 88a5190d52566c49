"""The matrix reference equals what harness/docs.py renders from the schema now."""

from __future__ import annotations

from conftest import REPO

from harness.docs import matrix_reference


def test_the_matrix_reference_is_current():
    committed = (REPO / "docs" / "matrix-reference.md").read_text("utf-8")
    assert committed == matrix_reference(), "regenerate: python -m harness.docs > docs/matrix-reference.md"


def test_the_matrix_reference_lists_every_key_of_the_schema():
    from harness.config import MatrixSpec, TuningSpec

    text = matrix_reference()
    for spec in (MatrixSpec, TuningSpec):
        assert f"## {spec.__name__}" in text
        assert all(f"| `{name}` |" in text for name in spec.model_fields)
    # a key without a description takes the comment on its line in config.py, pragmas dropped
    assert "| `suites` | `list[\"perplexity\" \\| \"task\" \\| \"benchmarks\" \\| \"safety\"]` | `null` | " \
           "None: every suite with data |" in text
    assert "| `tokens` | `int (> 0)` | required | non-padding training tokens every cell consumes, exactly |" in text
