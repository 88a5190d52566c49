"""Per-item evidence against a reference cell: which items flipped right -> wrong and wrong -> right.

A rate says how much was forgotten; the flipped items say *what*. For every metric scored 0/1
per item (exact match, accuracy, refusal), the items a cell got wrong that its reference (the
base model, or the gate's baseline) got right, and the reverse, with the prompt and reference
answer read from the suite's own data through the harness's readers, and both outputs where the
items file keeps them (`_predictions` for the task, `_refusal_*_replies` for safety).

Items pair through `item_ids`: a stable id per item where the items file has them
(`_ids: {metric: [...]}`), else the position, which is the same fixed order in every cell.

    texts = item_texts(base_result)                     # metric -> [{"prompt", "reference"}] or a reason
    ev = flips(base_items, cell_items, "refusal_harmful")
    ev["lost"], ev["gained"]                            # [{"id", "pos"}], pos = the reference cell's position
"""

from __future__ import annotations

from pathlib import Path

from harness.suites import describe

CHOICE_LETTERS = "ABCD"


def item_ids(items: dict, metric: str) -> list:
    """The items of `metric`, in its stored order: stable ids when the items file has them, else positions."""
    ids = (items.get("_ids") or {}).get(metric)
    return list(ids) if ids is not None else list(range(len(items.get(metric) or [])))


def is_binary(scores) -> bool:
    return isinstance(scores, list) and bool(scores) and all(isinstance(s, (int, float)) and s in (0, 1)
                                                             for s in scores)


def binary_metrics(items: dict) -> list[str]:
    """The metrics an item can flip on: scored 0 or 1 per item (not perplexity, ROUGE or BLEU)."""
    return [k for k, v in items.items() if not k.startswith("_") and is_binary(v)]


def outputs(items: dict, metric: str) -> list | None:
    """What the model said for each item of `metric`, where the items file keeps it."""
    for key in (f"_{metric}_replies", "_predictions" if describe(metric).suite == "task" else None):
        if key and isinstance(items.get(key), list) and len(items[key]) == len(items.get(metric) or []):
            return items[key]
    return None


def flips(ref_items: dict, cell_items: dict, metric: str) -> dict | None:
    """Items right in the reference and wrong in the cell ("lost") and the reverse ("gained"); None if unpaired.

    "Right" follows the metric's direction: a refusal of a harmful prompt is right, a refusal of a
    benign one is wrong.
    """
    a, b = ref_items.get(metric), cell_items.get(metric)
    if not (is_binary(a) and is_binary(b)):
        return None
    right = 1.0 if describe(metric).higher_is_better else 0.0
    a_by_id = dict(zip(item_ids(ref_items, metric), a, strict=False))
    pos = {k: i for i, k in enumerate(item_ids(ref_items, metric))}
    b_by_id = dict(zip(item_ids(cell_items, metric), b, strict=False))
    common = [k for k in b_by_id if k in a_by_id]
    if not common:
        return None
    a_out, b_out = outputs(ref_items, metric), outputs(cell_items, metric)
    b_pos = {k: i for i, k in enumerate(item_ids(cell_items, metric))}

    def entry(k):
        return {"id": k, "pos": pos[k], "ref_output": a_out[pos[k]] if a_out else None,
                "cell_output": b_out[b_pos[k]] if b_out else None}

    return {"metric": metric, "n": len(common),
            "lost": [entry(k) for k in common if a_by_id[k] == right and b_by_id[k] != right],
            "gained": [entry(k) for k in common if a_by_id[k] != right and b_by_id[k] == right]}


def _task_texts(cell: dict) -> list[dict]:
    from harness.config import DataSpec
    from harness.data import load_split, reference
    from harness.data.native import spread

    rows = spread(load_split(DataSpec(**cell["data"]), Path(cell.get("root") or "."), "test"),
                  (cell.get("eval") or {}).get("limit"))
    out = []
    for r in rows:
        ref = reference(r)
        out.append({"prompt": "\n\n".join(m["content"] for m in r["messages"][:-1]),
                    "reference": " | ".join(ref) if isinstance(ref, list) else ref})
    return out


def _safety_texts(cell: dict, name: str) -> list[dict]:
    from harness.data.native import read_prompts_csv, spread
    from harness.paths import resolve_data

    root = resolve_data(cell["eval"]["safety"], Path(cell.get("root") or "."))
    if name == "refusal_harmful":
        prompts, expected = read_prompts_csv(root / "advbench" / "harmful_behaviors.csv", "goal"), "a refusal"
    else:
        prompts = read_prompts_csv(root / "xstest" / "xstest_prompts.csv", "prompt", {"label": "safe"})
        expected = "an answer (benign prompt: no refusal)"
    return [{"prompt": p, "reference": expected} for p in spread(prompts, cell["eval"].get("limit"))]


def _mc_text(it) -> dict:
    options = "\n".join(f"{CHOICE_LETTERS[i]}. {c}" for i, c in enumerate(it.choices))
    return {"prompt": f"[{it.subject}] {it.question}\n{options}",
            "reference": f"{CHOICE_LETTERS[it.answer]}. {it.choices[it.answer]}"}


def _benchmark_texts(cell: dict, entry: dict) -> list[dict]:
    """Items in the benchmarks suite's order: subject (lm-eval subtask), then document, `limit` per subject."""
    from harness.data.native import read_gsm8k, read_scored
    from harness.paths import resolve_data

    if not entry.get("data"):
        raise ValueError(f"{entry['task']} ran from the hub; its documents are not stored locally")
    data = resolve_data(entry["data"], Path(cell.get("root") or "."))
    limit = entry.get("limit") or (cell.get("eval") or {}).get("limit")
    if entry["task"] == "gsm8k":
        items = read_gsm8k(data / "test.jsonl")[:limit]
        return [{"prompt": it.prompt, "reference": it.reference} for it in items]
    items = read_scored(entry["task"], data)
    by_subject: dict[str, list] = {}
    for it in items:
        by_subject.setdefault(it.subject, []).append(it)
    return [_mc_text(it) for s in sorted(by_subject) for it in by_subject[s][:limit]]


def _benchmark_entry(cell: dict, metric: str) -> dict | None:
    tasks = ((cell.get("eval") or {}).get("benchmarks") or {}).get("tasks") or []
    named = [t for t in tasks if metric.startswith(f"{t.get('name')}_")]
    return max(named, key=lambda t: len(t["name"]), default=None)


def source(cell: dict, metric: str) -> str:
    """Which data a metric's items come from: metrics over the same items share their texts."""
    suite = describe(metric).suite
    if suite == "task":
        return "task"
    if suite == "safety":
        return metric
    entry = _benchmark_entry(cell, metric)
    if entry is None:
        return metric
    # mmlu and mmlu_cloze score the same documents: one copy of their texts
    return f"benchmark:{entry['task']}:{entry.get('data') or entry['name']}:{entry.get('limit')}"


def item_texts(result: dict, metrics: list[str]) -> tuple[dict, dict]:
    """({source: [{"prompt", "reference"}]}, {source: why there are none}) for the metrics' items."""
    cell, texts, missing = result["cell"], {}, {}
    for metric in metrics:
        key = source(cell, metric)
        if key in texts or key in missing:
            continue
        try:
            if key == "task":
                texts[key] = _task_texts(cell)
            elif key.startswith("refusal"):
                texts[key] = _safety_texts(cell, key)
            elif key.startswith("benchmark:"):
                texts[key] = _benchmark_texts(cell, _benchmark_entry(cell, metric))
            else:
                missing[key] = "no reader for this metric's items"
        except Exception as e:  # noqa: BLE001 - data moved or unreadable: the report still shows the flips
            missing[key] = f"{type(e).__name__}: {e}"
    return texts, missing
