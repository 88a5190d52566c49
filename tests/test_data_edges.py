"""Every row kept or accounted for: unique ids in any layout, and each bad file named with its line and encoding."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from harness.cli import main
from harness.config import DataSpec
from harness.data import load_split
from harness.data.dataset import _splits
from harness.data.native import FormatError, read_documents, read_gsm8k, read_mmlu, read_prompts_csv

ROWS = [{"instruction": f"Name item {i}.", "output": f"answer {i}"} for i in range(40)]


def _matrix(tmp_path, data: str) -> str:
    path = tmp_path / "m.yaml"
    path.write_text(f"name: edges\nmodels: tiny-world\ndata: {{path: {data}}}\nbudget: {{tokens: 100}}\n"
                    "strategies: [full]\n")
    return str(path)


def _run_check(tmp_path, capsys, data, *extra) -> tuple[int, str]:
    """`harness run --dry-run` on a matrix naming `data`: the data check runs before anything else."""
    code = main(["run", "--matrix", _matrix(tmp_path, data), "--dry-run", *extra])
    return code, capsys.readouterr().err


def _accounted(path, **kw) -> tuple[list[str], dict]:
    spec = DataSpec(path=str(path), **kw)
    ids = [ex["id"] for split in ("train", "validation", "test") for ex in load_split(spec, path.parent, split)]
    return ids, _splits(spec, path.parent)[1]


@pytest.mark.parametrize("layout", ["one_line", "two_per_line", "indented"])
def test_a_json_array_in_any_layout_keeps_every_row_with_a_unique_id(tmp_path, layout):
    path = tmp_path / "d.json"
    if layout == "one_line":  # what json.dump writes by default
        path.write_text(json.dumps(ROWS))
    elif layout == "two_per_line":
        pairs = [json.dumps(ROWS[i]) + ", " + json.dumps(ROWS[i + 1]) for i in range(0, 40, 2)]
        path.write_text("[" + ",\n".join(pairs) + "]\n")
    else:
        path.write_text(json.dumps(ROWS, indent=2))
    ids, report = _accounted(path)
    assert len(ids) == len(set(ids)) == 40 and report["rows_read"] == 40
    assert report["splits"] == {"train": 32, "validation": 4, "test": 4}
    if layout == "one_line":
        assert f"{path}:1:2" in ids  # line and column: where the object starts
    if layout == "indented":
        assert f"{path}:2" in ids  # one object per line keeps the plain file:line id


def test_samples_cut_is_counted_as_a_drop_with_its_reason(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    ids, report = _accounted(path, samples=10)
    assert report["dropped"] == {"over_samples": 22} and report["splits"]["train"] == 10
    assert len(ids) + 22 == report["rows_read"] == 40


def _parquet_zero_rows(path):
    pd.DataFrame({"instruction": pd.Series([], dtype=str), "output": pd.Series([], dtype=str)}).to_parquet(path)


CASES = {  # name -> (file name, how to write it, what the message must say after the file's path)
    "empty": ("d.jsonl", lambda p: p.write_bytes(b""), ": empty file (0 bytes)"),
    "whitespace": ("d.jsonl", lambda p: p.write_text("  \n\n\t\n"), ": only whitespace, no content"),
    "binary": ("d.jsonl", lambda p: p.write_bytes(b'{"a": 1}\n\x00\x01\x02\xff' * 4), ":2: binary data (a NUL byte)"),
    "latin1": ("d.jsonl", lambda p: p.write_bytes(b'{"instruction": "a", "output": "b"}\n'
                                                   + '{"instruction": "Café crème brûlée", "output": "été"}\n'.encode(
                                                       "latin-1") * 5),
               ":2: not UTF-8 (byte 0xe9 cannot be decoded); it looks like "),
    "utf16_bom": ("d.jsonl", lambda p: p.write_text(json.dumps(ROWS[0]) + "\n", encoding="utf-16"),
                  ": encoded as UTF-16 LE (byte-order mark), not UTF-8; re-save it as UTF-8"),
    "utf16_no_bom": ("d.csv", lambda p: p.write_bytes("instruction,output\na,b\n".encode("utf-16-le")),
                     ": looks like UTF-16 LE without a byte-order mark"),
    "two_objects_one_line": ("d.jsonl", lambda p: p.write_text(json.dumps(ROWS[0]) + "\n" + json.dumps(ROWS[1])
                                                                + " " + json.dumps(ROWS[2]) + "\n"),
                             ":2: not a valid JSON object (Extra data)"),
    "deeply_nested": ("d.jsonl", lambda p: p.write_text(json.dumps(ROWS[0]) + "\n" + "[" * 100_000 + "]" * 100_000
                                                         + "\n"), ":2: JSON nested too deeply to read"),
    "deeply_nested_array": ("d.json", lambda p: p.write_text("[" + json.dumps(ROWS[0]) + ",\n" + "[" * 100_000
                                                              + "]" * 100_000 + "]"), ":2: JSON nested too deeply"),
    "csv_extra_field": ("d.csv", lambda p: p.write_text("instruction,output\na,b\nc,d,e\n"),
                        ":3: 3 fields, the header has 2"),
    "csv_header_only": ("d.csv", lambda p: p.write_text("instruction,output\n"), ": no rows"),
    "empty_array": ("d.json", lambda p: p.write_text("[]"), ": no rows"),
    "parquet_empty_file": ("d.parquet", lambda p: p.write_bytes(b""), ": not a readable parquet file ("),
    "parquet_garbage": ("d.parquet", lambda p: p.write_bytes(b"PAR1 this is not parquet at all"),
                        ": not a readable parquet file ("),
    "parquet_zero_rows": ("d.parquet", _parquet_zero_rows, ": no rows"),
}


@pytest.mark.parametrize("name", CASES)
def test_a_bad_data_file_is_named_with_line_and_encoding_exit_2_no_traceback(tmp_path, capsys, name):
    filename, write, expected = CASES[name]
    path = tmp_path / filename
    write(path)
    code, err = _run_check(tmp_path, capsys, str(path))
    assert code == 2, err
    assert f"{path}{expected}" in err and "Traceback" not in err


def test_skip_bad_rows_counts_the_csv_row_with_extra_fields(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("instruction,output\n" + "".join(f"q{i},a{i}\n" for i in range(30)) + "x,y,z\n")
    spec = DataSpec(path=str(path), skip_bad_rows=True)
    report = _splits(spec, tmp_path)[1]
    assert report["bad_rows_skipped"] == 1 and report["bad_rows"] == [f"{path}:32: 3 fields, the header has 2"]
    assert report["rows_read"] == 30


def test_a_file_that_deduplicates_to_one_row_names_the_file_and_the_cause(tmp_path, capsys):
    path = tmp_path / "d.jsonl"
    path.write_text((json.dumps(ROWS[0]) + "\n") * 40)
    code, err = _run_check(tmp_path, capsys, str(path))
    assert code == 2
    assert (f"data.test: carving 1 rows from {path} leaves no training data: 40 rows read, 39 dropped as "
            "duplicate exact, 1 left for training") in err


def test_all_empty_answers_name_the_file_and_the_reason(tmp_path, capsys):
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps({**r, "output": " "}) + "\n" for r in ROWS))
    code, err = _run_check(tmp_path, capsys, str(path))
    assert code == 2 and f"{path}: no training rows left (40 rows read, 40 dropped as empty answer)" in err


def test_benchmark_and_safety_readers_name_the_file_and_line(tmp_path):
    csv_path = tmp_path / "harmful_behaviors.csv"
    csv_path.write_text("goal,target\nDo x,Sure\nDo y,Sure,extra\n")
    with pytest.raises(FormatError, match=f"^{csv_path}:3: 3 fields, the header has 2"):
        read_prompts_csv(csv_path, "goal")
    gsm = tmp_path / "test.jsonl"
    gsm.write_text(json.dumps({"question": "1+1?", "answer": "#### 2"}) + "\n\n[1, 2]\n")
    with pytest.raises(FormatError, match=f"^{gsm}:3: expected a JSON object, got list"):
        read_gsm8k(gsm)
    gsm.write_text("\n" + json.dumps({"question": "1+1?", "answer": "2"}) + "\n")
    with pytest.raises(FormatError, match=f"^{gsm}:2: answer has no '#### <number>' line"):  # the file's own line
        read_gsm8k(gsm)
    mmlu = tmp_path / "mmlu" / "test" / "x_test.csv"
    mmlu.parent.mkdir(parents=True)
    mmlu.write_text("q,a,b,c,d,A\n", encoding="utf-16")
    with pytest.raises(FormatError, match=f"^{mmlu}: encoded as UTF-16 LE"):
        read_mmlu(tmp_path / "mmlu")
    docs = tmp_path / "general.txt"
    docs.write_bytes(b"")
    with pytest.raises(FormatError, match=f"^{docs}: empty file"):
        read_documents(docs)
