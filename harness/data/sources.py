"""Read raw rows from where users keep data: json/jsonl/csv/parquet files, split folders, or the hub.

Every row comes with where it was read (`file:line`, or `hub id[split] row i`) so that a
later check can name it. Malformed rows raise FormatError naming the file and line unless
the caller asked to skip them; skipped rows are returned as messages so they can be counted.

    rows, skipped = read_rows(Path("data/train.jsonl"), skip_bad=False)
    rows[0]   # Row(where="data/train.jsonl:1", data={"instruction": ..., "output": ...})
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from harness.data.native import FormatError

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
    """Rows of one local file, by its suffix; (rows, messages about the rows skipped)."""
    path = Path(path)
    if not path.is_file():
        raise FormatError(f"{path}: no such data file")
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return _jsonl(path, skip_bad)
    if suffix == ".json":
        text = path.read_text(encoding="utf-8")
        return (_json_array(path, text), []) if text.lstrip().startswith("[") else _jsonl(path, skip_bad)
    if suffix == ".csv":
        with path.open(encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            rows, line = [], 2
            for r in reader:
                rows.append(Row(f"{path}:{line}", dict(r)))
                line = reader.line_num + 1  # a quoted field may span lines
            return rows, []
    if suffix == ".parquet":
        import pandas as pd

        frame = pd.read_parquet(path)
        return [Row(f"{path} row {i}", r) for i, r in enumerate(frame.to_dict(orient="records"))], []
    raise FormatError(f"{path}: unsupported data file type {suffix!r} (expected one of {', '.join(SUFFIXES)})")


def _jsonl(path: Path, skip_bad: bool) -> tuple[list[Row], list[str]]:
    rows, skipped = [], []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                if not isinstance(obj, dict):
                    raise ValueError(f"expected a JSON object per line, got {type(obj).__name__}")
            except ValueError as e:
                msg = f"{path}:{n}: not a valid JSON object ({getattr(e, 'msg', e)})"
                if not skip_bad:
                    raise FormatError(msg + "; fix the line or pass --skip-bad-rows") from None
                skipped.append(msg)
                continue
            rows.append(Row(f"{path}:{n}", obj))
    return rows, skipped


def _json_array(path: Path, text: str) -> list[Row]:
    """A JSON array of objects, each row tagged with the line its object starts on."""
    dec = json.JSONDecoder()
    pos = text.index("[") + 1
    rows = []

    def skip(p: int) -> int:
        while p < len(text) and text[p] in " \t\r\n,":
            p += 1
        return p

    pos = skip(pos)
    while pos < len(text) and text[pos] != "]":
        line = text.count("\n", 0, pos) + 1
        try:
            obj, pos = dec.raw_decode(text, pos)
        except json.JSONDecodeError as e:  # one broken element breaks the array: no row can be skipped
            raise FormatError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
        if not isinstance(obj, dict):
            raise FormatError(f"{path}:{line}: expected an object per array element, got {type(obj).__name__}")
        rows.append(Row(f"{path}:{line}", obj))
        pos = skip(pos)
    if pos >= len(text):
        raise FormatError(f"{path}:{text.count(chr(10)) + 1}: the JSON array is not closed with ']'")
    return rows


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

