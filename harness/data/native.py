"""Readers for benchmark files in their native layouts (MMLU, C-Eval, CMMLU, GSM8K, AdvBench, XSTest).

The tiny world writes these layouts and the real datasets ship in them, so one reader
serves both. A malformed file raises `FormatError` naming the file and the line; every file is
read as UTF-8 through harness.textfile (an empty, binary or otherwise encoded file is named).

    items = read_mmlu(Path("data/mmlu"), split="test")      # [MCItem(...), ...]
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path

from harness.textfile import FormatError, read_text


@dataclass(frozen=True)
class MCItem:
    subject: str
    question: str
    choices: tuple[str, ...]
    answer: int  # index into choices


@dataclass(frozen=True)
class GenItem:
    prompt: str
    reference: str


def csv_rows(path: Path, header: bool, check_width: bool = True) -> tuple[list[str] | None, list[tuple[int, list]]]:
    """(header, [(line, fields)]) of a UTF-8 CSV; a row whose field count differs from the header's is an error
    (unless `check_width` is off: the caller counts such rows itself)."""
    reader = csv.reader(io.StringIO(read_text(path), newline=""))
    rows, line = [], 1
    try:
        for fields in reader:
            if fields:  # csv gives [] for a blank line
                rows.append((line, fields))
            line = reader.line_num + 1  # a quoted field may span lines
    except csv.Error as e:
        raise FormatError(f"{path}:{reader.line_num}: not valid CSV ({e})") from None
    if not header:
        return None, rows
    if not rows:
        raise FormatError(f"{path}: no header row")
    (_, names), rows = rows[0], rows[1:]
    if dupes := sorted({n for n in names if names.count(n) > 1}):
        raise FormatError(f"{path}:1: the header names column(s) {dupes} more than once")
    for n, fields in rows if check_width else ():
        if len(fields) != len(names):
            raise FormatError(f"{path}:{n}: {len(fields)} fields, the header has {len(names)} ({', '.join(names)})")
    return names, rows


def _mc_rows(path: Path, rows, subject: str) -> list[MCItem]:
    items = []
    for n, row in rows:
        if len(row) < 6 or row[5].strip() not in ("A", "B", "C", "D"):
            raise FormatError(f"{path}:{n}: expected question,A,B,C,D,answer with answer in A-D, got {row!r:.120}")
        items.append(MCItem(subject, row[0], tuple(row[1:5]), "ABCD".index(row[5].strip())))
    return items


def _subject_files(root: Path, split: str, layout: str, suffix: str = "") -> list[tuple[Path, str]]:
    """(file, subject) for every `<root>/<split>/<subject><suffix>`; the suffix is `_<split>.csv` unless given."""
    suffix = suffix or f"_{split}.csv"
    files = sorted((Path(root) / split).glob(f"*{suffix}"))
    if not files:
        raise FormatError(f"{root}/{split}: no *{suffix} files ({layout} layout expected)")
    return [(p, p.name[: -len(suffix)]) for p in files]


def read_mmlu(root: Path, split: str = "test") -> list[MCItem]:
    """MMLU: `<root>/<split>/<subject>_<split>.csv`, no header, rows question,A,B,C,D,answer."""
    items = []
    for path, subject in _subject_files(root, split, "MMLU"):
        items += _mc_rows(path, csv_rows(path, header=False)[1], subject)
    return items


def _headed_mc(root: Path, split: str, layout: str, columns: tuple[str, ...], suffix: str = "") -> list[MCItem]:
    """Items of per-subject CSVs whose header names the question, A-D and answer `columns`; other columns (an id,
    an explanation) are not read."""
    items = []
    for path, subject in _subject_files(root, split, layout, suffix):
        names, rows = csv_rows(path, header=True)
        if missing := sorted(set(columns) - set(names)):
            raise FormatError(f"{path}:1: header lacks {missing} ({layout} layout expected: a header naming "
                              f"{','.join(columns)})")
        pick = [names.index(k) for k in columns]
        items += _mc_rows(path, [(n, [r[i] for i in pick]) for n, r in rows], subject)
    return items


def read_ceval(root: Path, split: str = "val") -> list[MCItem]:
    """C-Eval: `<root>/<split>/<subject>_<split>.csv` with header id,question,A,B,C,D,answer[,explanation]."""
    return _headed_mc(root, split, "C-Eval", ("question", "A", "B", "C", "D", "answer"))


def read_cmmlu(root: Path, split: str = "test") -> list[MCItem]:
    """CMMLU: `<root>/<split>/<subject>.csv` with header ,Question,A,B,C,D,Answer (its first column an unnamed
    row index, as pandas wrote it)."""
    return _headed_mc(root, split, "CMMLU", ("Question", "A", "B", "C", "D", "Answer"), suffix=".csv")


# The multiple-choice layouts a benchmark's `data:` folder can have, by lm-eval task: the reader, the split scored
# (dev/ holds the few-shot examples) and the layout, for messages.
MC_LAYOUTS = {
    "mmlu": (read_mmlu, "test", "MMLU layout: test/<subject>_test.csv, dev/<subject>_dev.csv"),
    "ceval-valid": (read_ceval, "val", "C-Eval layout: val/<subject>_val.csv, dev/<subject>_dev.csv"),
    "cmmlu": (read_cmmlu, "test", "CMMLU layout: test/<subject>.csv, dev/<subject>.csv, header ,Question,A,B,C,D,"
                                  "Answer"),
}


def read_scored(task: str, root: Path) -> list[MCItem]:
    """The items lm-eval's `task` scores from a folder in its layout (MMLU's test/, C-Eval's val/, ...)."""
    read, split, _ = MC_LAYOUTS[task]
    return read(root, split)


def jsonl_objects(path: Path, required: tuple[str, ...] = ()) -> list[tuple[int, dict]]:
    """(line, object) for every non-blank line of a UTF-8 JSON Lines file; each line must be one JSON object."""
    rows = []
    for n, line in enumerate(read_text(path).split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise FormatError(f"{path}:{n}: not valid JSON ({e.msg})") from None
        except RecursionError:
            raise FormatError(f"{path}:{n}: JSON nested too deeply to read") from None
        if not isinstance(row, dict):
            raise FormatError(f"{path}:{n}: expected a JSON object, got {type(row).__name__}")
        if missing := [k for k in required if k not in row]:
            raise FormatError(f"{path}:{n}: missing key(s) {missing}")
        rows.append((n, row))
    return rows


def read_jsonl(path: Path, required: tuple[str, ...]) -> list[dict]:
    return [row for _, row in jsonl_objects(path, required)]


def read_gsm8k(path: Path) -> list[GenItem]:
    """GSM8K JSONL: {question, answer}; the answer's last line is `#### <number>`."""
    rows = jsonl_objects(path, ("question", "answer"))
    for n, r in rows:
        if not isinstance(r["answer"], str) or "####" not in r["answer"]:
            raise FormatError(f"{path}:{n}: answer has no '#### <number>' line")
    return [GenItem(r["question"], r["answer"].split("####")[-1].strip().replace(",", "")) for _, r in rows]


def read_prompts_csv(path: Path, column: str, where: dict[str, str] | None = None) -> list[str]:
    """One column of a prompt CSV (AdvBench `goal`, XSTest `prompt`), optionally filtered."""
    names, rows = csv_rows(path, header=True)
    if missing := sorted({column, *(where or {})} - set(names)):
        raise FormatError(f"{path}:1: header lacks {missing}")
    records = [dict(zip(names, r, strict=True)) for _, r in rows]
    return [r[column] for r in records if all(r[k] == v for k, v in (where or {}).items())]


def spread(items: list, limit: int | None) -> list:
    """At most `limit` items, evenly spaced through the file (a quick look still covers every part of it)."""
    return items[:: max(1, len(items) // limit)][:limit] if limit else items


def read_documents(path: Path) -> list[str]:
    """A text corpus as documents: JSONL with a `text` field, or plain text split at blank lines.

    Plain text covers WikiText's `wiki.test.tokens` (paragraphs and headings between lines
    holding one space) and one-document-per-paragraph corpora; blank documents are dropped.
    """
    path = Path(path)
    if path.suffix == ".jsonl":
        docs = [r["text"] for r in read_jsonl(path, ("text",))]
    else:
        docs = [d.strip() for d in re.split(r"\n[ \t]*\n", read_text(path))]  # blank lines
    docs = [d for d in docs if d.strip()]
    if not docs:
        raise FormatError(f"{path}:1: no non-empty documents")
    return docs
