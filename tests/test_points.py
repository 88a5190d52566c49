"""Points besides a cell's end: checkpoints leave the run as it was, interpolation runs from the base to the tuned
model, and the leaderboard draws the trade-off from per-item scores."""

from __future__ import annotations

import copy
import json
import re

import pytest
import torch
from conftest import TINY_WORLD
from test_matrix_runner import by_label, write_matrix
from test_strategies import CASES, batch, make_base

import strategies  # noqa: F401
from harness import snapshots
from harness.cli import main
from harness.config import ConfigError, EvalSpec, TradeoffSpec
from harness.matrix import resolve_params
from harness.report.tradeoff import like_with_like, operating_point, within
from strategies.base import STRATEGIES


def logits(model, b) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(input_ids=b["input_ids"]).logits


def _train(tiny_model_dir, tmp_path, snapshot_at=None):
    from test_budget import DATA

    from harness.config import ModelSpec, TrainSpec
    from harness.data import budgeted, encode, load_split
    from harness.models import load
    from harness.train import train

    torch.manual_seed(0)
    model, tok = load(ModelSpec(id=str(tiny_model_dir)))
    strategy = STRATEGIES.get("lora")()
    model = strategy.prepare(model, resolve_params(strategy.Params, {"r": 4, "dropout": 0.1}))  # dropout draws RNG
    examples = budgeted([encode(tok, r, 256) for r in load_split(DATA, TINY_WORLD, "train")[:40]], 1500, seed=0)
    usage = train(model, tok, examples, TrainSpec(batch_size=4, learning_rate=3e-3), {"tokens": 1500}, seed=0,
                  snapshot_at=snapshot_at, snapshot_dir=tmp_path / "snaps" if snapshot_at else None)
    return model, usage


def test_checkpoint_snapshots_leave_the_token_count_and_the_final_model_as_without_them(tiny_model_dir, tmp_path):
    plain, plain_usage = _train(tiny_model_dir, tmp_path)
    with_points, usage = _train(tiny_model_dir, tmp_path, snapshot_at=[0.25, 0.5, 0.75])
    b = batch()
    b["input_ids"] = b["input_ids"] % 200 + 3
    assert torch.equal(logits(plain, b), logits(with_points, b))
    assert (usage["tokens"], usage["steps"], usage["loss_curve"]) == (
        plain_usage["tokens"], plain_usage["steps"], plain_usage["loss_curve"])
    taken = usage["snapshots"]
    assert [t["fraction"] for t in taken] == [0.25, 0.5, 0.75]
    assert all(t["tokens"] >= t["fraction"] * 1500 for t in taken)
    assert [t["tokens"] for t in taken] == sorted(t["tokens"] for t in taken) and taken[-1]["tokens"] < 1500
    final = snapshots.snapshot(with_points)
    snapshots.restore(with_points, taken[0]["path"])  # the model at a quarter of the run is another model
    assert not torch.equal(logits(with_points, b), logits(plain, b))
    snapshots.restore(with_points, final)
    assert torch.equal(logits(with_points, b), logits(plain, b))


INTERPOLABLE = [n for n in CASES if not STRATEGIES.get(n).not_interpolable]


@pytest.mark.parametrize("name", sorted(CASES))
def test_interpolation_runs_from_the_base_at_0_to_the_tuned_model_at_1(name):
    strategy = STRATEGIES.get(name)()
    params = resolve_params(strategy.Params, CASES[name][0])
    base = make_base("llama")
    reference = copy.deepcopy(base)
    if reason := strategy.check(base, params):
        pytest.skip(reason)
    model = strategy.prepare(base, params)
    start = snapshots.snapshot(model)
    torch.manual_seed(3)
    with torch.no_grad():  # "training": every trainable number moved
        for p in snapshots.trainable(model).values():
            p.add_(0.05 * torch.randn_like(p))
    b = batch()
    tuned = logits(model, b)
    final = snapshots.snapshot(model)
    if name not in INTERPOLABLE:
        with pytest.raises(ValueError, match="not the base model"):
            snapshots.blend(model, start, final, 0.5, strategy)
        return
    snapshots.blend(model, start, final, 0.0, strategy)
    assert torch.allclose(logits(model, b), logits(reference, b), atol=1e-5)
    snapshots.blend(model, start, final, 0.5, strategy)
    half = logits(model, b)
    assert not torch.allclose(half, tuned, atol=1e-4) and not torch.allclose(half, logits(reference, b), atol=1e-4)
    snapshots.blend(model, start, final, 1.0, strategy)
    assert torch.allclose(logits(model, b), tuned, atol=1e-5)


def test_lora_blends_scale_the_update_linearly():
    strategy = STRATEGIES.get("lora")()
    base = make_base("llama")
    reference = copy.deepcopy(base)
    model = strategy.prepare(base, resolve_params(strategy.Params, {"r": 4}))
    start = snapshots.snapshot(model)
    torch.manual_seed(3)
    with torch.no_grad():
        for p in snapshots.trainable(model).values():
            p.add_(0.05 * torch.randn_like(p))
    final = snapshots.snapshot(model)
    snapshots.blend(model, start, final, 0.25, strategy)
    merged = dict(copy.deepcopy(model).merge_and_unload().named_parameters())
    snapshots.blend(model, start, final, 1.0, strategy)
    full = dict(copy.deepcopy(model).merge_and_unload().named_parameters())
    for n, w in reference.named_parameters():
        assert torch.allclose(merged[n] - w, 0.25 * (full[n] - w), atol=1e-6), n  # a·ΔW, not a²·ΔW


def test_points_config_is_checked_at_the_edge():
    assert EvalSpec(checkpoints=[0.5, 0.25, 1.0]).checkpoints == [0.25, 0.5, 1.0]
    for bad, match in (({"checkpoints": [0]}, "fraction"), ({"checkpoints": [1.5]}, "fraction"),
                       ({"interpolate": [0]}, "0 is the base model"), ({"interpolate": [0.5, 0.5]}, "repeats"),
                       ({"suites": ["perplexity"], "point_suites": ["task"]}, "not among")):
        with pytest.raises(ValueError, match=match):
            EvalSpec(**bad)


def test_the_points_keys_leave_every_id_as_it_was_until_set(tmp_path, tiny_model_dir):
    from harness.config import load_matrix
    from harness.matrix import expand

    ids = []
    for extra in ("", "  checkpoints: [0.5]\n  interpolate: [0.5]\n"):
        path = tmp_path / "m.yaml"
        path.write_text(f"name: m\nmodels: {tiny_model_dir}\ndata: {{path: x}}\nbudget: {{tokens: 100}}\n"
                        f"strategies: [lora]\neval:\n  suites: [perplexity]\n{extra}")
        ids.append({c.label: c.id for c in expand(load_matrix(path), root=tmp_path)})
    assert ids[0]["base"] == ids[1]["base"]  # the base trains nothing: no points, the same evaluation
    assert ids[0]["lora"] != ids[1]["lora"]


def test_a_bad_points_key_names_the_file_and_key(tmp_path):
    from harness.config import load_matrix

    path = tmp_path / "m.yaml"
    path.write_text("name: m\nmodels: x\ndata: {path: x}\nbudget: {tokens: 100}\nstrategies: [lora]\n"
                    "eval: {interpolate: [1.0]}\n")
    with pytest.raises(ConfigError, match=r"m\.yaml.*eval\.interpolate"):
        load_matrix(path)


def _point(kind, at, task, ppl, bench=0.0):
    d = lambda x: {"delta": x, "lo": x - 0.1, "hi": x + 0.1}  # noqa: E731
    return {"key": kind, "kind": kind, "at": at, "task": d(task), "ppl_pct": d(ppl), "bench": {"mmlu_acc": d(bench)}}


def test_the_operating_point_is_the_best_task_score_within_the_limits():
    spec = TradeoffSpec(general_ppl_increase=0.05, benchmark_drop=0.01)
    points = [_point("base", 0, 0, 0), _point("interpolate", 0.5, 0.20, 2.0), _point("checkpoint", 0.5, 0.25, 4.9),
              _point("end", 1, 0.30, 8.0)]
    assert operating_point(points, spec)["kind"] == "checkpoint"  # the end overshoots the +5% limit
    points[2]["bench"]["mmlu_acc"]["delta"] = -0.02  # now the checkpoint forgets a benchmark point too many
    assert operating_point(points, spec)["kind"] == "interpolate"
    assert not within(points[3], spec)
    assert operating_point([_point("base", 0, 0, 0), _point("end", 1, 0.3, 9.0)], spec)["kind"] == "base"
    lower = [_point("base", 0, 0, 0), _point("end", 1, -0.4, 1.0)]  # a lower-is-better task metric: -0.4 is a gain
    assert operating_point(lower, spec, higher_is_better=False)["kind"] == "end"
    # benchmarks measured at the end alone (point_suites without them) hold no point to their limit
    ends_only = [_point("base", 0, 0, 0), _point("checkpoint", 0.5, 0.2, 1.0), _point("end", 1, 0.3, 2.0)]
    ends_only[1]["bench"] = {}
    ends_only[2]["bench"]["mmlu_acc"]["delta"] = -0.2
    assert operating_point(ends_only, spec)["kind"] == "checkpoint"  # unfair: only the end was held to MMLU
    assert [p["bench"] for p in like_with_like(ends_only)] == [{}, {}, {}]
    assert operating_point(like_with_like(ends_only), spec)["kind"] == "end"


@pytest.mark.slow
def test_a_matrix_with_points_stores_them_per_item_and_draws_the_tradeoff(tmp_path, tiny_model_dir):
    strategies_yaml = "[{name: lora, params: {r: 4}, train: {learning_rate: 3.0e-3}}, prompt]"
    points = "  checkpoints: [0.5, 1.0]\n  interpolate: [0.5]\n"
    runs = {}
    for name, extra in (("plain", ""), ("points", points)):
        path = write_matrix(tmp_path, tiny_model_dir, strategies_yaml, tokens=800, name=name,
                            extra=f"eval:\n  suites: [perplexity, task]\n  limit: 4\n  max_new_tokens: 8\n"
                                  f"  general_text: {TINY_WORLD / 'data' / 'general' / 'test.jsonl'}\n{extra}")
        text = path.read_text().replace("eval: {suites: [perplexity], limit: 4}\n", "")
        path.write_text(text)
        assert main(["run", "--matrix", str(path), "--out", str(tmp_path / name), "--in-process"]) == 0
        runs[name] = by_label(tmp_path / name)
    lora, plain = runs["points"]["lora r=4 lr=0.003"], runs["plain"]["lora r=4 lr=0.003"]
    assert lora["metrics"] == plain["metrics"] and lora["usage"]["loss_curve"] == plain["usage"]["loss_curve"]
    assert [p["key"] for p in lora["points"]] == ["checkpoint@0.5", "interpolate@0.5"]
    assert all(p["metrics"] for p in lora["points"]) and lora["points"][0]["tokens"] >= 400
    assert "reason" in runs["points"]["prompt"]["points"][-1]  # prompt tuning: no blend through the base
    from harness.report.frame import load_items

    items = load_items(tmp_path / "points", lora["id"])["_points"]
    assert set(items) == {"checkpoint@0.5", "interpolate@0.5"}
    assert len(items["interpolate@0.5"]["_ids"]["task_exact_match"]) == len(
        load_items(tmp_path / "points", lora["id"])["_ids"]["task_exact_match"])
    assert any(p["phase"] == "points" for p in lora["timing"]["phases"])
    board = (tmp_path / "points" / "LEADERBOARD.md").read_text()
    assert "## Stability-plasticity: the operating point" in board and "a=0.5" in board
    assert (tmp_path / "points" / "tradeoff.png").is_file()
    # each point's score against the end's, paired on the same items: for a mean metric its estimate is the
    # point's gain over the base minus the end's
    from harness.report.frame import current_set, load_results, summarize
    from harness.report.tradeoff import curves_for

    rows = summarize(current_set(load_results(tmp_path / "points"))[0])
    curve = curves_for(rows, tmp_path / "points")["lora r=4 lr=0.003"]
    end = curve[-1]
    assert end["kind"] == "end" and end["vs_end"] is None
    for point in curve[:-1]:
        assert point["vs_end"]["paired"]
        assert point["vs_end"]["delta"] == pytest.approx(point["task"]["delta"] - end["task"]["delta"], abs=1e-9)
    assert "| there − end" in board
    assert "Stability-plasticity" not in (tmp_path / "plain" / "LEADERBOARD.md").read_text()
    # inference cost, for every ok cell: lora merges, prompt tuning adds its virtual tokens to every request
    for r in runs["points"].values():
        inf = r["inference"]
        assert inf["prompt_tokens_per_s"] > 0 and inf["ms_per_token"] >= 0 and inf["new_tokens"] == 16
    assert lora["inference"]["merge"] == "merged" and lora["inference"]["merged"]["prompt_tokens_per_s"] > 0
    prompt = runs["points"]["prompt"]["inference"]
    assert prompt["virtual_tokens"] == 16 and "merged" not in prompt and "virtual tokens" in prompt["merge"]
    assert runs["points"]["base"]["inference"]["merge"].startswith("already plain")
    assert "## Inference cost and efficiency" in board and "efficiency = gain /" in board
    # the page shows both sections and draws the curves: one solid line per cell with points, from the base
    page = (tmp_path / "points" / "report.html").read_text()
    assert 'id="tradeoff-section"' in page and 'id="efficiency-section"' in page and 'id="chart-tradeoff"' in page
    data = json.loads(re.search(r'<script id="report-data" type="application/json">(.*?)</script>', page, re.S)[1])
    solid = [t for t in data["figures"]["tradeoff"]["data"] if t["line"]["dash"] == "solid"]
    assert sorted(t["name"] for t in solid) == ["lora r=4 lr=0.003", "prompt"] and all(t["y"][0] == 0 for t in solid)
    assert 'id="tradeoff-section"' not in (tmp_path / "plain" / "report.html").read_text()


def test_the_efficiency_score_is_the_gain_under_its_printed_penalties():
    from harness.report.efficiency import score

    base = {"total_params": 1000, "inference": {"ms_per_token": 10.0}}
    row = {"vs_base": {"task_exact_match": {"delta": 0.3}}, "trainable_params": 1000,
           "usage": {"peak_memory_mb": 50.0}, "inference": {"ms_per_token": 20.0, "merged": {"ms_per_token": 15.0}}}
    # p = 1, m = 50/100, latency: the merged model is 50% slower than the base
    assert score(row, base, "task_exact_match", 100.0) == pytest.approx(0.3 / (2 * 1.5 * 1.5))
    row["vs_base"]["task_exact_match"]["delta"] = -0.1
    assert score(row, base, "task_exact_match", 100.0) is None  # learned nothing: no score
