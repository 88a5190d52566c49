"""Readers for benchmark files in their native layouts (MMLU, C-Eval, GSM8K, AdvBench, XSTest).

The tiny world writes these layouts and the real datasets ship in them, so one reader
serves both. A malformed file raises `FormatError` naming the file and the line.

    items = read_mmlu(Path("data/mmlu"), split="test")      # [MCItem(...), ...]
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path


class FormatError(ValueError):
    """A benchmark file does not have the layout its reader expects."""


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


def _mc_rows(path: Path, rows, subject: str, first: int) -> list[MCItem]:
    items = []
    for n, row in enumerate(rows, start=first):
        if len(row) < 6 or row[5].strip() not in ("A", "B", "C", "D"):
            raise FormatError(f"{path}:{n}: expected question,A,B,C,D,answer with answer in A-D, got {row!r:.120}")
        items.append(MCItem(subject, row[0], tuple(row[1:5]), "ABCD".index(row[5].strip())))
    return items


def _subject_files(root: Path, split: str, layout: str) -> list[tuple[Path, str]]:
    """(file, subject) for every `<root>/<split>/<subject>_<split>.csv`."""
    files = sorted((Path(root) / split).glob(f"*_{split}.csv"))
    if not files:
        raise FormatError(f"{root}/{split}: no *_{split}.csv files ({layout} layout expected)")
    return [(p, p.name[: -len(f"_{split}.csv")]) for p in files]


def read_mmlu(root: Path, split: str = "test") -> list[MCItem]:
    """MMLU: `<root>/<split>/<subject>_<split>.csv`, no header, rows question,A,B,C,D,answer."""
    items = []
    for path, subject in _subject_files(root, split, "MMLU"):
        with path.open(encoding="utf-8", newline="") as f:
            items += _mc_rows(path, csv.reader(f), subject, 1)
    return items


def read_ceval(root: Path, split: str = "val") -> list[MCItem]:
    """C-Eval: `<root>/<split>/<subject>_<split>.csv` with header id,question,A,B,C,D,answer[,explanation]."""
    items = []
    for path, subject in _subject_files(root, split, "C-Eval"):
        with path.open(encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            missing = {"question", "A", "B", "C", "D", "answer"} - set(reader.fieldnames or [])
            if missing:
                raise FormatError(f"{path}:1: header lacks {sorted(missing)} (C-Eval layout expected)")
            rows = [[r["question"], r["A"], r["B"], r["C"], r["D"], r["answer"]] for r in reader]
            items += _mc_rows(path, rows, subject, 2)
    return items


def read_jsonl(path: Path, required: tuple[str, ...]) -> list[dict]:
    rows = []
    with Path(path).open(encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise FormatError(f"{path}:{n}: not valid JSON ({e.msg})") from None
            if missing := [k for k in required if k not in row]:
                raise FormatError(f"{path}:{n}: missing key(s) {missing}")
            rows.append(row)
    return rows


def read_gsm8k(path: Path) -> list[GenItem]:
    """GSM8K JSONL: {question, answer}; the answer's last line is `#### <number>`."""
    rows = read_jsonl(path, ("question", "answer"))
    for n, r in enumerate(rows, start=1):
        if "####" not in r["answer"]:
            raise FormatError(f"{path}:{n}: answer has no '#### <number>' line")
    return [GenItem(r["question"], r["answer"].split("####")[-1].strip().replace(",", "")) for r in rows]


def read_prompts_csv(path: Path, column: str, where: dict[str, str] | None = None) -> list[str]:
    """One column of a prompt CSV (AdvBench `goal`, XSTest `prompt`), optionally filtered."""
    with Path(path).open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        needed = {column, *(where or {})}
        if missing := needed - set(reader.fieldnames or []):
            raise FormatError(f"{path}:1: header lacks {sorted(missing)}")
        return [r[column] for r in reader if all(r[k] == v for k, v in (where or {}).items())]


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
        docs = [d.strip() for d in re.split(r"\n[ \t]*\n", path.read_text(encoding="utf-8"))]  # blank lines
    docs = [d for d in docs if d.strip()]
    if not docs:
        raise FormatError(f"{path}:1: no non-empty documents")
    return docs
