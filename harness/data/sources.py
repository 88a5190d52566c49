"""Read raw rows from where users keep data: json/jsonl/csv/parquet files, split folders, or the hub.

Every row comes with where it was read (`file:line`, or `hub id[split] row i`) so that a
later check can name it. Malformed rows raise FormatError naming the file and line unless
the caller asked to skip them; skipped rows are returned as messages so they can be counted.

    rows, skipped = read_rows(Path("data/train.jsonl"), skip_bad=False)
    rows[0]   # Row(where="data/train.jsonl:1", data={"instruction": ..., "output": ...})
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from harness.data.native import FormatError, csv_rows
from harness.textfile import read_text

SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")


@dataclass(frozen=True)
class Row:
    where: str  # file:line or hub id[split] row i
    data: dict


def split_file(folder: Path, stem: str) -> Path | None:
    """`<folder>/<stem>.<suffix>` for the first supported suffix that exists."""
    for suffix in SUFFIXES:
        if (folder / f"{stem}{suffix}").is_file():
            return folder / f"{stem}{suffix}"
    return None


def read_rows(path: Path, skip_bad: bool) -> tuple[list[Row], list[str]]:
    """Rows of one local file, by its suffix; (rows, messages about the rows skipped).

    Each row's `where` is unique in the file: `file:line`, or `file:line:column` where one line
    holds several objects (a JSON array written on one line). A file that holds no rows, is not
    UTF-8 text, or is not readable in its format is a FormatError naming it.
    """
    path = Path(path)
    if not path.is_file():
        raise FormatError(f"{path}: no such data file")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        rows, skipped = _parquet(path), []
    elif suffix in (".jsonl", ".json"):
        text = read_text(path)
        rows, skipped = (_json_array(path, text), []) if suffix == ".json" and text.lstrip().startswith("[") \
            else _jsonl(path, text, skip_bad)
    elif suffix == ".csv":
        rows, skipped = _csv(path, skip_bad)
    else:
        raise FormatError(f"{path}: unsupported data file type {suffix!r} (expected one of {', '.join(SUFFIXES)})")
    if not rows:
        raise FormatError(f"{path}: no rows" + (f"; all {len(skipped)} were malformed, e.g. {skipped[0]}"
                                                if skipped else ""))
    return rows, skipped


def _bad(msg: str, skip_bad: bool, skipped: list[str]) -> None:
    if not skip_bad:
        raise FormatError(msg + "; fix the line or pass --skip-bad-rows")
    skipped.append(msg)


def _csv(path: Path, skip_bad: bool) -> tuple[list[Row], list[str]]:
    """A CSV with a header row; a row with more or fewer fields than the header is malformed."""
    names, records = csv_rows(path, header=True, check_width=False)
    rows, skipped = [], []
    for line, fields in records:
        if len(fields) != len(names):
            _bad(f"{path}:{line}: {len(fields)} fields, the header has {len(names)}", skip_bad, skipped)
            continue
        rows.append(Row(f"{path}:{line}", dict(zip(names, fields, strict=True))))
    return rows, skipped


def _parquet(path: Path) -> list[Row]:
    import pandas as pd

    try:
        frame = pd.read_parquet(path)
    except Exception as e:  # pyarrow raises its own types for every kind of broken file
        first = (str(e).splitlines() or [type(e).__name__])[0]
        raise FormatError(f"{path}: not a readable parquet file ({first[:200]})") from None
    return [Row(f"{path} row {i}", r) for i, r in enumerate(frame.to_dict(orient="records"))]


def _jsonl(path: Path, text: str, skip_bad: bool) -> tuple[list[Row], list[str]]:
    rows, skipped = [], []
    for n, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            if not isinstance(obj, dict):
                raise ValueError(f"expected a JSON object per line, got {type(obj).__name__}")
        except RecursionError:
            _bad(f"{path}:{n}: JSON nested too deeply to read", skip_bad, skipped)
            continue
        except ValueError as e:
            _bad(f"{path}:{n}: not a valid JSON object ({getattr(e, 'msg', e)})", skip_bad, skipped)
            continue
        rows.append(Row(f"{path}:{n}", obj))
    return rows, skipped


def _json_array(path: Path, text: str) -> list[Row]:
    """A JSON array of objects, each row tagged with where its object starts (line, and column if it shares one)."""
    dec = json.JSONDecoder()
    pos = text.index("[") + 1
    found = []

    def skip(p: int) -> int:
        while p < len(text) and text[p] in " \t\r\n,":
            p += 1
        return p

    pos = skip(pos)
    while pos < len(text) and text[pos] != "]":
        line = text.count("\n", 0, pos) + 1
        column = pos - text.rfind("\n", 0, pos)
        try:
            obj, pos = dec.raw_decode(text, pos)
        except json.JSONDecodeError as e:  # one broken element breaks the array: no row can be skipped
            raise FormatError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
        except RecursionError:
            raise FormatError(f"{path}:{line}: JSON nested too deeply to read") from None
        if not isinstance(obj, dict):
            raise FormatError(f"{path}:{line}: expected an object per array element, got {type(obj).__name__}")
        found.append((line, column, obj))
        pos = skip(pos)
    if pos >= len(text):
        raise FormatError(f"{path}:{text.count(chr(10)) + 1}: the JSON array is not closed with ']'")
    per_line = Counter(line for line, _, _ in found)
    return [Row(f"{path}:{line}" + (f":{column}" if per_line[line] > 1 else ""), obj) for line, column, obj in found]


def read_hub(dataset: str, config: str | None, split: str) -> list[Row]:
    """Rows of a hub dataset split, through datasets.load_dataset (offline unless HF_HUB_OFFLINE=0)."""
    import datasets

    name = f"{dataset}" + (f" ({config})" if config else "") + f"[{split}]"
    try:
        ds = datasets.load_dataset(dataset, config, split=split)
    except Exception as e:  # datasets raises many types for "not reachable"; all mean the same here
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise FormatError(f"hub dataset {name}: cannot be loaded; the hub is unreachable or offline "
                          f"(the CLI sets HF_HUB_OFFLINE=1; set HF_HUB_OFFLINE=0 HF_DATASETS_OFFLINE=0 to "
                          f"download) [{first}]") from None
    return [Row(f"{name} row {i}", r) for i, r in enumerate(ds.to_list())]

