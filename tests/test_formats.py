"""The readers parse the real benchmark files (../shared/data) and name the file and line of a bad row."""

from __future__ import annotations

import pytest
from conftest import SHARED_DATA

from harness.data.native import FormatError, read_ceval, read_gsm8k, read_jsonl, read_mmlu, read_prompts_csv

real = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="../shared/data is absent (a user's fresh clone)")


@pytest.mark.shared_data
@real
def test_real_files_parse_in_their_native_layouts():
    assert len(read_mmlu(SHARED_DATA / "mmlu", "test")) == 14_042  # counts from shared/data/SOURCES.md
    assert len(read_mmlu(SHARED_DATA / "mmlu", "dev")) == 285
    assert len(read_ceval(SHARED_DATA / "ceval", "val")) == 1_346  # val has no explanation column
    assert len(read_ceval(SHARED_DATA / "ceval", "dev")) == 260
    gsm = read_gsm8k(SHARED_DATA / "gsm8k" / "test.jsonl")
    assert len(gsm) == 1_319 and gsm[0].reference == "18"
    assert len(read_prompts_csv(SHARED_DATA / "advbench" / "harmful_behaviors.csv", "goal")) == 520
    assert len(read_prompts_csv(SHARED_DATA / "xstest" / "xstest_prompts.csv", "prompt", {"label": "safe"})) == 250


def test_bad_rows_name_file_and_line(tmp_path):
    (tmp_path / "test").mkdir()
    (tmp_path / "test" / "x_test.csv").write_text("q,a,b,c,d,A\nq2,a,b,c,d,E\n")
    with pytest.raises(FormatError, match=r"x_test.csv:2: expected question,A,B,C,D,answer"):
        read_mmlu(tmp_path, "test")
    bad = tmp_path / "d.jsonl"
    bad.write_text('{"question": "q", "answer": "#### 1"}\n{"question": "q"}\n')
    with pytest.raises(FormatError, match=r"d.jsonl:2: missing key\(s\) \['answer'\]"):
        read_jsonl(bad, ("question", "answer"))
