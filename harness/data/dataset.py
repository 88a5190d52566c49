"""A DataSpec becomes its splits, its tokenised training set and its hygiene report.

Rows are read (sources), checked into examples (formats), emptied and duplicated ones
dropped with a reason, validation/test carved deterministically when the source has none
(by content hash, so every cell and machine carves the same), then tokenised (template)
with an on-disk cache. Contamination is checked against every eval set the matrix names.

    test = load_split(cell.data, root, "test")
    examples, report = train_examples(cell.data, tok, root, cache_dir)
"""

from __future__ import annotations

import hashlib
import json
import os
from functools import lru_cache
from pathlib import Path

from harness.config import DataSpec
from harness.data import cache
from harness.data.formats import detect, empty_reason, example_text, to_example
from harness.data.hygiene import contamination, dedup, normalise
from harness.data.native import FormatError
from harness.data.sources import SUFFIXES, read_hub, read_rows, split_file
from harness.data.template import encode
from harness.paths import resolve_data

SPLITS = ("train", "validation", "test")
TUNING = "tuning"  # carved from train only when data.tuning is set: the LR search's split, never reported
DEFAULT_CARVE = 0.1  # share of the training rows held out per missing split
SKIP_HINT = "; fix it, or pass --skip-bad-rows (data.skip_bad_rows: true) to skip and count such rows"


def _local(value: str, root: Path) -> Path:
    """A data path as users read it in messages and item ids (matrices/../data/x.json -> data/x.json)."""
    return Path(os.path.normpath(resolve_data(value, root)))


def _read(spec: DataSpec, root: Path, split: str) -> tuple[list, list[str]] | None:
    """Raw rows of one split as the source gives it, or None when the source has no such split."""
    name = spec.split if split == "train" else getattr(spec, split)
    if split != "train" and name is not None and not isinstance(name, str):
        return None  # a fraction or count: carved from train
    if spec.hub:
        return (read_hub(spec.hub, spec.hub_config, name), []) if name else None
    where = _local(spec.path, root)
    if split != "train" and name and Path(name).suffix in SUFFIXES:
        return read_rows(_local(name, root), spec.skip_bad_rows)
    if where.is_dir():
        path = split_file(where, name or split)
        if path is None:
            if split != "train" and name is None:
                return None
            raise FormatError(f"{where}: no {name or split} split; expected {name or split}.jsonl/.json/.csv/.parquet")
        return read_rows(path, spec.skip_bad_rows)
    if split == "train":
        return read_rows(where, spec.skip_bad_rows)
    if name:
        raise FormatError(f"data.{split}: {name!r} is not a data file; name a file ({', '.join(SUFFIXES)}) or give "
                          f"a fraction of the training rows")
    return None


def _examples(spec: DataSpec, rows, skipped: list[str], dropped: dict) -> list[dict]:
    """Rows checked into examples; the layout is told once, from the first row, so later rows are held to it."""
    fixed = {"instruction": spec.instruction} if spec.instruction else {}
    fmt = spec.format
    if fmt == "auto" and rows:
        fmt = detect({**fixed, **rows[0].data}, spec.columns) or "auto"
    out = []
    for row in rows:
        try:
            ex = to_example(row, fmt, spec.columns, spec.instruction)
            if spec.group:  # items of one group are resampled together by the intervals
                if row.data.get(spec.group) in (None, ""):
                    raise FormatError(f"{row.where}: no value in the group column {spec.group!r} (data.group)")
                ex["group"] = str(row.data[spec.group])
        except FormatError as e:
            if not spec.skip_bad_rows:
                raise FormatError(f"{e}{SKIP_HINT}") from None
            skipped.append(str(e))
            continue
        if reason := empty_reason(ex):
            dropped.setdefault(reason, []).append({"id": ex["id"]})
            continue
        out.append(ex)
    return out


def _order(examples: list[dict]) -> list[dict]:
    """A fixed order that depends on content only (not on file order or any seed)."""
    return sorted(examples, key=lambda ex: hashlib.sha256(normalise(example_text(ex)).encode()).hexdigest())


def _without(examples: list[dict], drop: list[dict]) -> list[dict]:
    ids = {ex["id"] for ex in drop}
    return [ex for ex in examples if ex["id"] not in ids]


def _carve_size(value, total: int, split: str) -> int:
    value = DEFAULT_CARVE if value is None else value
    size = round(value * total) if value < 1 else int(value)
    if value >= 1 and value != int(value):
        raise FormatError(f"data.{split}: {value} is neither a fraction below 1 nor a whole count of rows")
    return max(1, size)


def _stamp(spec: DataSpec, root: Path) -> str:
    """Size and mtime of the local files the spec reads: an edited file is read again in this process."""
    paths = [resolve_data(v, root) for v in (spec.path, spec.validation, spec.test) if isinstance(v, str)]
    files = [f for p in paths for f in (sorted(p.iterdir()) if p.is_dir() else [p]) if f.is_file()]
    return json.dumps([(str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files]) if spec.path else ""


def _splits(spec: DataSpec, root: Path) -> tuple[dict[str, list[dict]], dict, str]:
    root = Path(root).resolve()
    return _pool(_spec_json(spec), str(root), _stamp(spec, root))


@lru_cache(maxsize=8)
def _pool(spec_json: str, root: str, stamp: str) -> tuple[dict[str, list[dict]], dict, str]:
    spec = DataSpec.model_validate_json(spec_json)
    digest, skipped, dropped, splits = hashlib.sha256(), [], {}, {}
    for split in SPLITS:
        read = _read(spec, Path(root), split)
        if read is None:
            continue
        rows, bad = read
        skipped += bad
        for row in rows:
            digest.update(json.dumps(row.data, sort_keys=True, default=str, ensure_ascii=False).encode())
        splits[split] = _examples(spec, rows, skipped, dropped)
    report = {"rows_read": sum(len(v) for v in splits.values()) + sum(len(v) for v in dropped.values()),
              "bad_rows_skipped": len(skipped), "bad_rows": skipped[:20]}
    train, dups = dedup(splits["train"], spec.dedup)
    dropped.update({k: v for k, v in dups.items() if v})
    carved = [s for s in ("test", "validation") if s not in splits] + ([TUNING] if spec.tuning is not None else [])
    source = spec.hub or str(_local(spec.path, Path(root)))
    if not train:
        raise FormatError(f"{source}: no training rows left ({_accounting(report, dropped, skipped)})")
    for split in carved:  # held out in content-hash order; what stays keeps its file order
        size = _carve_size(getattr(spec, split), len(train), split)
        if size >= len(train):
            raise FormatError(f"data.{split}: carving {size} rows from {source} leaves no training data: "
                              f"{_accounting(report, dropped, skipped)}, {len(train)} left for training; give "
                              f"data.{split} a file, or use a training set with more distinct rows")
        splits[split] = _order(train)[:size]
        train = _without(train, splits[split])
    if spec.samples and spec.samples < len(train):
        dropped["over_samples"] = [{"id": ex["id"]} for ex in _order(train)[spec.samples:]]
        train = _without(train, dropped["over_samples"])
    splits["train"] = train
    kept = sum(len(v) for v in splits.values()) + sum(len(v) for v in dropped.values())
    if kept != report["rows_read"]:  # every row is in a split or dropped with a reason, never lost
        raise RuntimeError(f"{source}: {report['rows_read']} rows read but {kept} accounted for (a harness bug)")
    report.update(dropped={k: len(v) for k, v in dropped.items()},
                  dropped_examples={k: v[:20] for k, v in dropped.items()},
                  carved=carved, splits={s: len(splits[s]) for s in SPLITS + (TUNING,) if s in splits})
    return splits, report, digest.hexdigest()


def _accounting(report: dict, dropped: dict, skipped: list[str]) -> str:
    """`40 rows read, 39 dropped as duplicate exact, 2 malformed rows skipped`: what became of the rows."""
    parts = [f"{report['rows_read']} rows read"]
    parts += [f"{len(v)} dropped as {k.replace('_', ' ')}" for k, v in dropped.items() if v]
    return ", ".join(parts + ([f"{len(skipped)} malformed rows skipped"] if skipped else []))


def _spec_json(spec: DataSpec) -> str:
    return spec.model_dump_json()


def load_split(spec: DataSpec, root: Path, split: str) -> list[dict]:
    """Examples of "train", "validation" or "test" ({id, messages} or {id, text}), hygiene applied.

    With data.drop_contaminated, test examples that share an n-gram with the training
    data are left out (they would score memory, not skill).
    """
    if split not in SPLITS + (TUNING,) or (split == TUNING and spec.tuning is None):
        raise ValueError(f"split must be one of {SPLITS} (or {TUNING!r} when data.tuning is set), got {split!r}")
    splits, _, _ = _splits(spec, root)
    out = splits[split]
    if split == "test" and spec.drop_contaminated:
        found = contamination([example_text(ex) for ex in splits["train"]],
                              {"test": [(ex["id"], example_text(ex)) for ex in out]}, spec.contamination_n)
        bad = {c["id"] for c in found["test"]["contaminated"]}
        out = [ex for ex in out if ex["id"] not in bad]
    return list(out)


def check(spec: DataSpec, root: Path) -> None:
    """Read every split once, before any cell runs: bad data stops the run as a ConfigError naming file and line."""
    from harness.config import ConfigError

    try:
        _splits(spec, root)
    except FormatError as e:
        raise ConfigError(f"data: {e}") from None


def train_examples(spec: DataSpec, tok, root: Path, cache_dir: Path | None = None) -> tuple[list[dict], dict]:
    """Tokenised training examples (before budgeting) and the report of what was kept and dropped.

    Cached under `cache_dir` by (rows read, tokenizer, spec): the same inputs give
    byte-identical token streams, read back instead of re-tokenised.
    """
    splits, report, digest = _splits(spec, root)
    key = cache.cache_key(digest, tok, _spec_json(spec))
    if hit := cache.load(cache_dir, key):
        return hit["examples"], {**hit["report"], "cache": "hit", "cache_key": key}
    examples, overlong, truncated = [], [], 0
    for ex in splits["train"]:
        enc = encode(tok, ex, spec.max_length, spec.template, spec.truncation, spec.loss_on)
        if enc is None:
            overlong.append(ex["id"])
            continue
        truncated += len(enc["input_ids"]) == spec.max_length and len(
            encode(tok, ex, None, spec.template, spec.truncation, spec.loss_on)["input_ids"]) > spec.max_length
        examples.append(enc)
    if not examples:
        source = spec.hub or str(_local(spec.path, Path(root)))
        raise FormatError(f"{source}: no training examples left after hygiene ({json.dumps(report['dropped'])}, "
                          f"{len(overlong)} longer than max_length {spec.max_length})")
    tokenized = {"examples": len(examples), "dropped_overlong": len(overlong), "overlong_examples": overlong[:20],
                 "truncated": int(truncated), "tokens": sum(len(e["input_ids"]) for e in examples),
                 "answer_tokens": sum(sum(t != -100 for t in e["labels"]) for e in examples)}
    entry = cache.save(cache_dir, key, {"examples": examples, "report": {**report, "tokenized": tokenized}})
    return entry["examples"], {**entry["report"], "cache": "miss", "cache_key": key}


def item_text(item) -> str:
    """The text of an eval item as the contamination check reads it (MC question with choices, prompt, example)."""
    if isinstance(item, str):
        return item
    if isinstance(item, dict):
        return example_text(item)
    if hasattr(item, "choices"):
        return item.question + "\n" + "\n".join(item.choices)
    return f"{item.prompt}\n{item.reference}"
