"""What a cell needs from the data layer, and the matrix's hygiene report.

`prepare_train` gives a cell its budgeted examples and writes `<results>/data_report.json`
(counts kept/dropped by reason, skipped bad rows, contamination per eval set with the item
ids, one summary line). `clean` lets a suite leave contaminated items out of scoring when
the matrix sets data.drop_contaminated.

    examples = prepare_train(cell, tok, results_dir)
    items = clean(cell, "mmlu", read_mmlu(root / "mmlu"))
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from harness.config import DataSpec, EvalSpec
from harness.data import native
from harness.data.collate import budgeted
from harness.data.dataset import item_text, load_split, train_examples
from harness.data.formats import example_text
from harness.data.hygiene import contamination, item_key
from harness.paths import resolve_data
from harness.store import write_json_atomic

REPORT = "data_report.json"


def eval_sets(data: DataSpec, ev: EvalSpec, root: Path) -> dict[str, list[tuple[str, str]]]:
    """Every eval set the matrix scores that exists on disk, as (item id, text) pairs."""
    sets: dict[str, list] = {}
    if "task" in ev.suites:
        sets["task_test"] = load_split(data.model_copy(update={"drop_contaminated": False}), root, "test")
    if "perplexity" in ev.suites:
        sets["validation"] = load_split(data, root, "validation")
        if ev.general_text:
            sets["general"] = native.read_documents(resolve_data(ev.general_text, root))  # as perplexity reads it
    if "benchmarks" in ev.suites and ev.benchmarks:  # local benchmark files; hub tasks cannot be read offline
        for t in ev.benchmarks.tasks:
            key = t.task.split("-")[0]  # mmlu, ceval, cmmlu, gsm8k: both formulations share one item set
            if t.data and key not in sets:  # config.py lets `data:` name only a local layout's folder
                where = resolve_data(t.data, root)
                sets[key] = (native.read_gsm8k(where / "test.jsonl") if t.task == "gsm8k"
                             else native.read_scored(t.task, where))
    if "safety" in ev.suites and ev.safety:
        s = resolve_data(ev.safety, root)
        for name, path, column in (("advbench", s / "advbench" / "harmful_behaviors.csv", "goal"),
                                   ("xstest", s / "xstest" / "xstest_prompts.csv", "prompt")):
            if path.is_file():
                sets[name] = native.read_prompts_csv(path, column)
    return {name: [(_item_id(name, i, it), item_text(it)) for i, it in enumerate(items)]
            for name, items in sets.items()}


def _item_id(name: str, i: int, item) -> str:
    if isinstance(item, dict):
        return item["id"]
    subject = getattr(item, "subject", None)
    return f"{name}:{subject}:{i}" if subject else f"{name}:{i}"


@lru_cache(maxsize=4)
def _contamination(data_json: str, eval_json: str, root: str) -> dict[str, dict]:
    data, ev = DataSpec.model_validate_json(data_json), EvalSpec.model_validate_json(eval_json)
    train = [example_text(ex) for ex in load_split(data, Path(root), "train")]
    return contamination(train, eval_sets(data, ev, Path(root)), data.contamination_n)


def contaminated(cell) -> dict[str, dict]:
    """Per eval set: {items, checked, contaminated: [{id, key, text}]} against this cell's training data."""
    return _contamination(cell.data.model_dump_json(), cell.eval.model_dump_json(), cell.root)


def clean(cell, name: str, items: list) -> list:
    """`items` without the contaminated ones when the matrix sets data.drop_contaminated; else unchanged."""
    if not cell.data.drop_contaminated:
        return items
    bad = {c["key"] for c in contaminated(cell).get(name, {}).get("contaminated", [])}
    return [it for it in items if item_key(item_text(it)) not in bad]


def summary(report: dict) -> str:
    """One line for the leaderboard header."""
    s, dropped = report["splits"], report["dropped"]
    drops = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in dropped.items() if n) or "none"
    tokenized = list(report.get("tokenized", {}).values())
    overlong = sum(t["dropped_overlong"] for t in tokenized[:1])
    parts = [f"data: {report['rows_read']} rows -> {s['train']} train / {s['validation']} validation / "
             f"{s['test']} test" + (f" / {s['tuning']} tuning (LR selection only)" if "tuning" in s else "")
             + (f" ({', '.join(report['carved'])} carved from train)" if report["carved"] else ""),
             f"dropped: {drops}" + (f", {overlong} overlong" if overlong else ""),
             f"{report['bad_rows_skipped']} bad rows skipped"]
    c = report.get("contamination", {})
    if c.get("sets"):
        found = ", ".join(f"{k} {len(v['contaminated'])}/{v['items']}" for k, v in c["sets"].items())
        parts.append(f"contamination ({c['n']}-gram): {found}"
                     + (" (dropped from scoring)" if c["dropped_from_scoring"] else ""))
    return "; ".join(parts)


def prepare_train(cell, tok, results_dir: Path, progress=print) -> list[dict]:
    """The cell's budgeted training examples; writes/updates the matrix's data_report.json."""
    results_dir = Path(results_dir)
    examples, report = train_examples(cell.data, tok, Path(cell.root), results_dir / ".cache" / "data")
    sets = contaminated(cell)
    path = results_dir / REPORT
    old = json.loads(path.read_text("utf-8")) if path.is_file() else {}
    tokenized = {**(old.get("tokenized") or {}), cell.model.id: {**report.pop("tokenized"), "cache": report["cache"]}}
    report.pop("cache"), report.pop("cache_key")
    out = {"matrix": cell.matrix, "spec": cell.data.model_dump(mode="json"), **report, "tokenized": tokenized,
           "contamination": {"n": cell.data.contamination_n, "dropped_from_scoring": cell.data.drop_contaminated,
                             "sets": sets}}
    out["summary"] = summary(out)
    write_json_atomic(path, out)
    progress(f"  {out['summary']}")
    if hits := [k for k, v in sets.items() if v["contaminated"]]:  # one line; the item ids are in the report
        progress(f"  {', '.join(hits)}: items share {cell.data.contamination_n}-grams with the training data (ids in "
                 f"{path})" + (", left out of scoring" if cell.data.drop_contaminated else
                               "; data.drop_contaminated: true leaves them out of scoring"))
    return budgeted(examples, cell.budget["tokens"], cell.seed)


def epochs(results_dir: Path, cell) -> float:
    """Passes over the training set the token budget makes (from the matrix's data report)."""
    report = json.loads((Path(results_dir) / REPORT).read_text("utf-8"))
    return round(cell.budget["tokens"] / max(1, report["tokenized"][cell.model.id]["tokens"]), 3)
