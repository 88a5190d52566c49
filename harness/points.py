"""A trained cell's scores at points besides its end: checkpoints of its one training run, and blends toward the base.

Each point is the model rebuilt from a snapshot (harness.snapshots) and scored by the matrix's
point suites (`eval.point_suites`, default: the cell's suites) exactly as the final model is, per
item, so the report pairs every point with the base model item by item:

- `checkpoint`: the model when training had seen `at` of the token budget (eval.checkpoints);
- `interpolate`: start + a·(final - start) in the trained parameters (eval.interpolate), which is
  base + a·(tuned - base) for a strategy whose prepared model is the base model.

The model is left as the final model. Stored as result["points"] (one record per point, metrics
with intervals) and the items file's "_points" ({point key: items as run_suites returns them}).

    points, items = evaluate_points(model, tok, cell, strategy, start, final, taken, clock)
    points[0]   # {"key": "checkpoint@0.25", "kind": "checkpoint", "at": 0.25, "tokens": 2048, "metrics": {...}}
"""

from __future__ import annotations

from harness import snapshots
from harness.timing import Clock


def key(kind: str, at: float) -> str:
    return f"{kind}@{at:g}"


def point_cell(cell):
    """The cell with only the point suites, so that run_suites scores a point as it scores the end."""
    suites = cell.eval.point_suites or cell.eval.suites
    return cell.model_copy(update={"eval": cell.eval.model_copy(update={"suites": list(suites)})})


def evaluate_points(model, tok, cell, strategy, start, final, taken: list[dict], clock: Clock | None = None,
                    progress=print) -> tuple[list[dict], dict]:
    """Score every checkpoint in `taken` (SnapshotCallback.taken) and every eval.interpolate weight.

    `start` and `final` are snapshots (tensors or files) of the prepared and the trained model. A strategy
    that cannot be interpolated gets one record per weight with its reason and no metrics."""
    from harness.evals.evaluate import run_suites

    clock = clock or Clock()
    sub = point_cell(cell)
    todo = [("checkpoint", t["fraction"], t) for t in taken]
    todo += [("interpolate", a, None) for a in cell.eval.interpolate or []]
    points, items = [], {}
    why = snapshots.interpolation_problem(strategy)
    if cell.eval.interpolate and not why:
        start = snapshots.read(start)  # once for every weight, not one file read per blend
    try:
        for kind, at, mark in todo:
            record = {"key": key(kind, at), "kind": kind, "at": at}
            if kind == "checkpoint":
                record.update(tokens=mark["tokens"], step=mark["step"])
            elif why:
                points.append({**record, "reason": why})
                continue
            with clock.phase("points", record["key"]):
                if kind == "checkpoint":
                    snapshots.restore(model, mark["path"])
                else:
                    snapshots.blend(model, start, final, at, strategy)
                progress(f"  point {record['key']}")
                record["metrics"], items[record["key"]] = run_suites(model, tok, sub, progress=lambda *_: None)
            points.append(record)
    finally:
        snapshots.restore(model, final)
    return points, items
