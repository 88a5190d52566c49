"""Real files' layouts through the data layer: several reference columns per row (DialogSum's summary1..3),
a fixed instruction for rows that hold only the input, and a plain-text general corpus (WikiText-2)."""

from __future__ import annotations

import json

import pytest
from conftest import SHARED_DATA
from pydantic import ValidationError

from harness.config import DataSpec, EvalSpec
from harness.data import load_split, reference
from harness.data.formats import example_text
from harness.data.native import FormatError
from harness.evals.task import score

OUTPUT = ["summary", "summary1", "summary2", "summary3"]


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_listed_output_columns_train_on_the_first_and_score_against_all(tmp_path):
    write(tmp_path / "train.jsonl", [{"dialogue": f"A: hi {i}\nB: bye", "summary": f"They greet {i}."}
                                     for i in range(20)])
    write(tmp_path / "test.jsonl", [{"dialogue": "A: lunch?\nB: yes", "summary1": "They agree to lunch.",
                                     "summary2": "A invites B to lunch.", "summary3": "B accepts lunch."}])
    spec = DataSpec(path=str(tmp_path), columns={"input": "dialogue", "output": OUTPUT},
                    instruction="Summarize the dialogue.", validation=2)
    train, test = load_split(spec, tmp_path, "train"), load_split(spec, tmp_path, "test")
    assert len(train) == 18 and "references" not in train[0]  # one reference: nothing extra kept
    assert train[0]["messages"][-2] == {"role": "user", "content": "Summarize the dialogue.\n\nA: hi 0\nB: bye"}
    assert reference(train[0]) == "They greet 0."
    assert test[0]["messages"][-1]["content"] == "They agree to lunch."  # the first present one
    assert example_text(test[0]) == "A: lunch?\nB: yes\nThey agree to lunch."  # no shared instruction to collide
    refs = reference(test[0])
    assert refs == ["They agree to lunch.", "A invites B to lunch.", "B accepts lunch."]
    scores = score(["A invites B to lunch.", "Nothing here."], [refs, refs], ["rouge", "exact_match"])
    assert scores["task_rouge_1"][0] == 1.0 and scores["task_exact_match"] == [1.0, 0.0]


def test_a_row_with_none_of_the_listed_columns_is_named_by_file_and_line(tmp_path):
    write(tmp_path / "d.jsonl", [{"dialogue": "x", "summary": "y"}, {"dialogue": "x", "topic": "z"}])
    spec = DataSpec(path=str(tmp_path / "d.jsonl"), columns={"input": "dialogue", "output": OUTPUT},
                    instruction="Summarize.")
    with pytest.raises(FormatError, match=r"d.jsonl:2: column 'summary' or 'summary1' or 'summary2' or 'summary3' "
                                          r"\(mapped to 'output'"):
        load_split(spec, tmp_path, "train")


@pytest.mark.parametrize("columns, message", [({"input": ["a", "b"], "output": "s"}, "only output may list"),
                                              ({"output": []}, "at least one")])
def test_column_lists_other_than_output_are_refused(columns, message):
    with pytest.raises(ValidationError, match=message):
        DataSpec(path="x.jsonl", columns=columns)


@pytest.mark.shared_data
def test_real_dialogsum_test_file_gives_three_references_per_dialogue(tmp_path):
    folder = SHARED_DATA / "dialogsum"
    if not folder.is_dir():
        pytest.skip("../shared/data absent")
    spec = DataSpec(path=str(folder / "dialogsum.dev.jsonl"), test=str(folder / "dialogsum.test.jsonl"),
                    validation=50, columns={"input": "dialogue", "output": OUTPUT}, instruction="Summarize.")
    train, test = load_split(spec, tmp_path, "train"), load_split(spec, tmp_path, "test")
    assert len(train) == 450 and len(test) == 500
    assert all(len(reference(ex)) == 3 for ex in test) and all(isinstance(reference(ex), str) for ex in train)
    first = json.loads((folder / "dialogsum.test.jsonl").read_text("utf-8").splitlines()[0])
    assert reference(test[0]) == [first["summary1"], first["summary2"], first["summary3"]]


def test_plain_text_general_corpus_is_checked_for_contamination_as_the_suite_reads_it(tmp_path):
    from harness.data.hygiene import contamination
    from harness.data.prepare import eval_sets

    shared = "the quick brown fox jumps over the lazy dog near the river bank at dawn today"
    (tmp_path / "wiki.test.tokens").write_text(f" \n = Title = \n \n {shared} \n \n another paragraph \n",
                                               encoding="utf-8")
    write(tmp_path / "train.jsonl", [{"instruction": "Copy.", "output": shared}] + [
        {"instruction": f"Say {i}.", "output": f"{i}"} for i in range(9)])
    data = DataSpec(path=str(tmp_path / "train.jsonl"))
    sets = eval_sets(data, EvalSpec(suites=["perplexity"], general_text="wiki.test.tokens"), tmp_path)
    assert [text for _, text in sets["general"]] == ["= Title =", shared, "another paragraph"]
    train = [ex["messages"][-1]["content"] for ex in load_split(data, tmp_path, "train")]
    found = contamination(train, {"general": sets["general"]}, 13)
    assert [c["text"] for c in found["general"]["contaminated"]] == [shared]
