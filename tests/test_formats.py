"""The readers parse the real benchmark files (../shared/data) and name the file and line of a bad row."""

from __future__ import annotations

import pytest
from conftest import SHARED_DATA

from harness.data.native import (
    FormatError,
    MCItem,
    read_ceval,
    read_cmmlu,
    read_gsm8k,
    read_jsonl,
    read_mmlu,
    read_prompts_csv,
)

real = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="../shared/data is absent (a user's fresh clone)")


@pytest.mark.shared_data
@real
def test_real_files_parse_in_their_native_layouts():
    assert len(read_mmlu(SHARED_DATA / "mmlu", "test")) == 14_042  # counts from shared/data/SOURCES.md
    assert len(read_mmlu(SHARED_DATA / "mmlu", "dev")) == 285
    assert len(read_ceval(SHARED_DATA / "ceval", "val")) == 1_346  # val has no explanation column
    assert len(read_ceval(SHARED_DATA / "ceval", "dev")) == 260
    assert len(read_cmmlu(SHARED_DATA / "cmmlu", "test")) == 11_582
    assert len(read_cmmlu(SHARED_DATA / "cmmlu", "dev")) == 335
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


def test_cmmlu_skips_its_unnamed_index_column_and_names_a_bad_row(tmp_path):
    (tmp_path / "test").mkdir()
    path = tmp_path / "test" / "chinese_history.csv"
    path.write_text(',Question,A,B,C,D,Answer\n0,秦朝的都城是哪里？,咸阳,洛阳,"长安,西安",南京,A\n'
                    '1,"下列哪位是唐朝诗人？\n（单选）",李白,苏轼,关汉卿,曹雪芹, B\n', encoding="utf-8")
    assert read_cmmlu(tmp_path, "test") == [
        MCItem("chinese_history", "秦朝的都城是哪里？", ("咸阳", "洛阳", "长安,西安", "南京"), 0),
        MCItem("chinese_history", "下列哪位是唐朝诗人？\n（单选）", ("李白", "苏轼", "关汉卿", "曹雪芹"), 1)]
    with path.open("a", encoding="utf-8") as f:
        f.write("2,汉朝的开国皇帝是谁？,刘邦,项羽,韩信,张良\n3,问题,甲,乙,丙,丁,E\n")
    with pytest.raises(FormatError, match=r"chinese_history.csv:5: 6 fields, the header has 7"):
        read_cmmlu(tmp_path, "test")
    path.write_text(",Question,A,B,C,D,Answer\n3,问题,甲,乙,丙,丁,E\n", encoding="utf-8")
    with pytest.raises(FormatError, match=r"chinese_history.csv:2: expected question,A,B,C,D,answer"):
        read_cmmlu(tmp_path, "test")
