"""The matrix runner: isolated failures, kill -9 resume, the folder lock, LR trials, determinism, Ray, torchrun."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import REPO, TINY_WORLD

from harness import store
from harness.cli import main
from harness.tuning import bracket

MATRIX = """
name: runner
models: {model}
data: {{path: {data}}}
budget: {{tokens: {tokens}{extra_budget}}}
train: {{batch_size: 4{extra_train}}}
strategies: {strategies}
eval: {{suites: [perplexity], limit: 4}}
{extra}
"""


def write_matrix(tmp_path, model, strategies, tokens=400, extra_budget="", extra_train="", extra="", name="m"):
    data = tmp_path / "record"
    if not data.exists():
        shutil.copytree(TINY_WORLD / "data" / "record", data)
    path = tmp_path / f"{name}.yaml"
    path.write_text(MATRIX.format(model=model, data=data, tokens=tokens, strategies=strategies,
                                  extra_budget=extra_budget, extra_train=extra_train, extra=extra))
    return path


def child_env():
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def by_label(out):
    return {r["label"]: r for r in store.load_all(out)}


@pytest.mark.slow
def test_failing_cells_get_their_status_and_the_others_finish(tmp_path, tiny_model_dir):
    strategies = ("[full, {name: full, train: {learning_rate: 1.0e+30}}, "
                  "{name: lora, params: {target_modules: [no_such_layer]}}]")
    out = tmp_path / "out"
    # in-process: a cell's exception is caught there too; a crashing child process is test_runner's crash test
    path = write_matrix(tmp_path, tiny_model_dir, strategies)
    assert main(["run", "--matrix", str(path), "--out", str(out), "--in-process"]) == 1
    results = by_label(out)
    assert results["base"]["status"] == "ok" and results["full"]["status"] == "ok"
    assert results["full lr=1e+30"]["status"] == "diverged"
    assert results["lora target_modules=['no_such_layer']"]["status"] == "failed"
    assert "no_such_layer" in results["lora target_modules=['no_such_layer']"]["reason"]


def test_a_broken_memory_cap_is_over_budget(tmp_path, tiny_model_dir):
    path = write_matrix(tmp_path, tiny_model_dir, "[full]", extra_budget=", max_memory_mb: 2")
    out = tmp_path / "out"
    assert main(["run", "--matrix", str(path), "--out", str(out)]) == 0  # a fresh process: its own heap
    full = by_label(out)["full"]
    assert full["status"] == "over_budget" and full["usage"]["stopped_by"] == "memory"
    assert full["usage"]["peak_memory_mb"] > 2 and full["usage"]["tokens"] < 400


@pytest.mark.slow
def test_kill_9_mid_matrix_then_rerun_keeps_finished_results_byte_identical(tmp_path, tiny_model_dir):
    path = write_matrix(tmp_path, tiny_model_dir, "[full, {name: lora, params: {r: [2, 4]}}]", tokens=1200)
    out = tmp_path / "out"
    run = subprocess.Popen([sys.executable, "-m", "harness", "run", "--matrix", str(path), "--out", str(out)],
                           env=child_env(), start_new_session=True, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not list((out / "cells").glob("*.json")) and time.time() < deadline:
        time.sleep(0.2)
    os.killpg(run.pid, signal.SIGKILL)  # the runner and the cell it is running
    run.wait()
    finished = {p.name: p.read_bytes() for p in (out / "cells").glob("*.json")}
    finished_items = {p.name: p.read_bytes() for p in (out / "items").glob("*.json")}
    assert 1 <= len(finished) < 4
    assert main(["run", "--matrix", str(path), "--out", str(out), "--in-process"]) == 0  # resumes either way
    assert {r["status"] for r in store.load_all(out)} == {"ok"} and len(store.load_all(out)) == 4
    assert finished == {name: (out / "cells" / name).read_bytes() for name in finished}
    assert finished_items == {name: (out / "items" / name).read_bytes() for name in finished_items}


def test_a_second_run_on_the_same_folder_fails_fast_naming_the_holder(tmp_path, tiny_model_dir, capsys):
    out = tmp_path / "out"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; from harness.runner import results_lock\n"
         "with results_lock(Path(sys.argv[1])):\n print('held', flush=True); time.sleep(60)", str(out)],
        env=child_env(), stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        path = write_matrix(tmp_path, tiny_model_dir, "[full]")
        assert main(["run", "--matrix", str(path), "--out", str(out), "--in-process"]) == 2
        err = capsys.readouterr().err
        assert str(out) in err and f"pid {holder.pid}" in err
        assert not (out / "cells").exists()
    finally:
        holder.kill()
        holder.wait()
    assert main(["run", "--matrix", str(path), "--out", str(out), "--in-process"]) == 0  # released by the kill


def test_same_seed_twice_gives_identical_metrics(tmp_path, tiny_model_dir):
    path = write_matrix(tmp_path, tiny_model_dir, "[{name: lora, params: {r: 4}}]")
    runs = []
    for i in range(2):
        assert main(["run", "--matrix", str(path), "--out", str(tmp_path / f"out{i}"), "--in-process"]) == 0
        runs.append(by_label(tmp_path / f"out{i}")["lora r=4"])
    a, b = runs
    assert a["usage"]["loss_curve"] == b["usage"]["loss_curve"] and a["metrics"] == b["metrics"]
    assert a["usage"]["tokens"] == 400 and a["usage"]["flops"] > 0 and a["usage"]["epochs"] > 0


def test_lr_trials_share_one_budget_and_the_best_trial_is_evaluated(tmp_path, tiny_model_dir):
    path = write_matrix(tmp_path, tiny_model_dir, "[full, {name: lora, params: {r: 4}}]",
                        extra="tuning: {lr_multipliers: [0.1, 1.0, 10.0]}")
    out = tmp_path / "out"
    assert main(["run", "--matrix", str(path), "--out", str(out), "--in-process"]) == 0
    results = by_label(out)
    for label in ("full", "lora r=4"):
        r = results[label]
        trials = r["lr_trials"]
        assert [t["multiplier"] for t in trials][:3] == [0.1, 1.0, 10.0]
        assert all(t["tokens"] == 400 for t in trials)
        chosen = [t for t in trials if t["chosen"]]
        assert len(chosen) == 1 and chosen[0]["tuning_loss"] == min(t["tuning_loss"] for t in trials)  # argmin
        assert r["usage"]["tuning_tokens"] == 400 * len(trials) and r["usage"]["tokens"] == 400
        assert r["usage"]["tuning_bracket"] == bracket(trials, 2)
        assert r["cell"]["train"]["learning_rate"] * chosen[0]["multiplier"] == pytest.approx(
            chosen[0]["learning_rate"])
    assert r["usage"]["tuning_objective"] == "loss"
    # the evaluated model is the chosen trial's: the same scores as a sweep of that multiplier alone
    runs = {}
    for name in ("m2", "m3"):
        chosen = next(t for t in runs["m2"]["lr_trials"] if t["chosen"]) if runs else None
        mults = f"[{chosen['multiplier']}]" if chosen else "[10.0, 0.1]"
        p = write_matrix(tmp_path, tiny_model_dir, "[{name: lora, params: {r: 4}}]", name=name,
                         extra=f"tuning: {{lr_multipliers: {mults}}}")
        assert main(["run", "--matrix", str(p), "--out", str(tmp_path / name), "--in-process"]) == 0
        runs[name] = by_label(tmp_path / name)["lora r=4"]
    assert len(runs["m3"]["lr_trials"]) == 1 and runs["m2"]["metrics"] == runs["m3"]["metrics"]


def test_later_seeds_train_at_the_rate_the_first_seed_searched(tmp_path, tiny_model_dir):
    from harness.config import load_matrix
    from harness.matrix import expand

    extra = "seeds: [3, 4]\ntuning: {lr_multipliers: [0.1, 10.0], max_extensions: 0}"
    path = write_matrix(tmp_path, tiny_model_dir, "[{name: lora, params: {r: [2, 4]}}]", extra=extra)
    out = tmp_path / "out"
    assert main(["run", "--matrix", str(path), "--out", str(out), "--in-process"]) == 0
    results = by_label(out)
    for r in (2, 4):
        first, later = results[f"lora r={r} seed=3"], results[f"lora r={r} seed=4"]
        chosen = next(t for t in first["lr_trials"] if t["chosen"])
        assert len(first["lr_trials"]) == 2 and first["usage"]["tuning_trials"] == 2
        # one trial, at the multiplier seed 3's search chose, trained under seed 4
        assert [t["multiplier"] for t in later["lr_trials"]] == [chosen["multiplier"]]
        assert later["lr_trials"][0]["searched_by"] == first["id"] == later["cell"]["lr_from"]
        assert later["usage"]["tuning_tokens"] == 400 and later["usage"]["loss_curve"] != first["usage"]["loss_curve"]
    # the report collapses the two seeds of each configuration into one row, though only seed 4 names lr_from
    from harness.report.frame import load_results, summarize

    rows = [r for r in summarize(load_results(out)) if r["strategy"] != "base"]
    assert sorted((r["label"].split(" lr=")[0], len(r["seeds"])) for r in rows) == [("lora r=2", 2), ("lora r=4", 2)]
    # the same matrix resumed: nothing runs again; with `each`, every seed searches (another experiment: other ids)
    cells = expand(load_matrix(path), tmp_path)
    assert all(store.is_finished(out, c.id) for c in cells)
    each = write_matrix(tmp_path, tiny_model_dir, "[{name: lora, params: {r: 2}}]", name="each",
                        extra=extra.replace("max_extensions: 0", "max_extensions: 0, seeds: each"))
    cells = expand(load_matrix(each), tmp_path)
    trained = [c for c in cells if c.strategy != "base"]
    assert not any(c.lr_from for c in cells) and not {c.id for c in trained} & set(store.stored_ids(out))


def test_a_later_seed_whose_search_has_no_result_fails_with_the_reason(tmp_path, tiny_model_dir):
    from harness.config import load_matrix
    from harness.matrix import expand
    from harness.runner import resolve_rate

    path = write_matrix(tmp_path, tiny_model_dir, "[full]", extra="seeds: [0, 1]\ntuning: {lr_multipliers: [1.0]}")
    later = expand(load_matrix(path), tmp_path)[-1]
    cell, why = resolve_rate(later, tmp_path / "empty")
    assert cell is later and "no chosen trial (status not run)" in why and later.lr_from in why


def test_the_tuning_split_is_apart_from_validation_and_test(tmp_path):
    from harness.config import DataSpec
    from harness.data import load_split

    rows = [{"instruction": f"Describe person {i}.", "input": "", "output": f"Person {i} lives in city {i % 7}."}
            for i in range(200)]
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    spec = DataSpec(path="d.jsonl", validation=0.1, test=0.1, tuning=0.1)
    split = {s: load_split(spec, tmp_path, s) for s in ("train", "validation", "test", "tuning")}
    ids = {s: {ex["id"] for ex in v} for s, v in split.items()}
    # each share is carved from what is left: test 10% of 200, validation 10% of 180, tuning 10% of 162
    assert {s: len(v) for s, v in ids.items()} == {"train": 146, "validation": 18, "test": 20, "tuning": 16}
    assert not ids["tuning"] & (ids["validation"] | ids["test"] | ids["train"])
    untuned = DataSpec(path="d.jsonl", validation=0.1, test=0.1)  # carving tuning leaves validation/test as they were
    assert {ex["id"] for ex in load_split(untuned, tmp_path, "validation")} == ids["validation"]
    assert {ex["id"] for ex in load_split(untuned, tmp_path, "test")} == ids["test"]
    with pytest.raises(ValueError, match="'tuning' when data.tuning is set"):
        load_split(untuned, tmp_path, "tuning")


def test_the_forgetting_objective_refuses_an_lr_over_the_ceiling():
    from harness.tuning import choose

    trials = [{"tuning_loss": 0.9, "general_ppl": 2.5}, {"tuning_loss": 1.1, "general_ppl": 1.7},
              {"tuning_loss": 1.4, "general_ppl": 1.6}, {"tuning_loss": None, "general_ppl": None}]
    assert choose(trials, "loss") == 0  # the lowest tuning loss ...
    assert choose(trials, "loss_within_forgetting", ceiling=1.76) == 1  # ... forgets past 1.6 x 1.1: refused
    assert choose(trials, "loss_within_forgetting", ceiling=1.5) == 2  # none within: the one that forgets least
    assert choose([{"tuning_loss": None}], "loss") is None


def test_the_forgetting_objective_records_the_ceiling_and_keeps_to_it(tmp_path, tiny_model_dir):
    general = tmp_path / "general.jsonl"
    docs = [json.dumps({"text": f"Ada Holt lives in Rita and keeps a cat. {i}"}) for i in range(4)]
    general.write_text("\n".join(docs))
    path = write_matrix(tmp_path, tiny_model_dir, "[full]", extra=(
        "tuning: {lr_multipliers: [0.1, 30.0], objective: loss_within_forgetting, max_general_ppl_increase: 0.5, "
        f"general_text: {general}}}"))
    assert main(["run", "--matrix", str(path), "--out", str(tmp_path / "out"), "--in-process"]) == 0
    r = by_label(tmp_path / "out")["full"]
    ceiling = r["usage"]["tuning_general_ppl_ceiling"]
    assert ceiling == pytest.approx(1.5 * r["usage"]["tuning_base_general_ppl"])
    trials = r["lr_trials"]
    assert all(t["objective"] == "loss_within_forgetting" and t["within_ceiling"] == (t["general_ppl"] <= ceiling)
               for t in trials)
    within = [t for t in trials if t["within_ceiling"]]
    best = min(within, key=lambda t: t["tuning_loss"]) if within else min(trials, key=lambda t: t["general_ppl"])
    assert best["chosen"] and sum(t["chosen"] for t in trials) == 1


def test_tuning_config_is_checked(tmp_path):
    from harness.config import ConfigError, load_matrix

    base = (REPO / "matrices" / "smoke.yaml").read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(base + "\ntuning: {lr_multipliers: [1.0], objective: loss_within_forgetting}\n")
    with pytest.raises(ConfigError, match="needs max_general_ppl_increase and general_text"):
        load_matrix(bad)
    bad.write_text(base + "\ntuning: {lr_multipliers: [1.0], objective: loss_within_forgetting, "
                   "max_general_ppl_increase: 0.1, general_text: zoo:tiny-world/general/test.jsonl}\n")
    with pytest.raises(ConfigError, match="must differ from eval.general_text"):
        load_matrix(bad)
    good = load_matrix(REPO / "matrices" / "smoke.yaml")
    assert good.tuning.objective == "loss" and good.data.tuning == 0.1  # a tuning matrix carves its split


def test_dry_run_prints_the_plan_with_memory_against_the_cap(tmp_path, tiny_model_dir, capsys):
    path = write_matrix(tmp_path, tiny_model_dir, "[full, {name: lora, params: {r: 4}}]",
                        extra_budget=", max_memory_mb: 30", extra="tuning: {lr_multipliers: [0.5, 2.0]}")
    assert main(["run", "--matrix", str(path), "--out", str(tmp_path / "out"), "--dry-run"]) == 0
    plan = capsys.readouterr().out
    assert "3 cells" in plan and "memory cap 30 MB" in plan and "2 trials per trained cell" in plan
    assert "NO" in plan or "yes" in plan
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_ray_executor_runs_a_two_cell_matrix(tmp_path, tiny_model_dir):
    pytest.importorskip("ray")
    path = write_matrix(tmp_path, tiny_model_dir, "[{name: lora, params: {r: 4}}]")
    out = tmp_path / "out"
    assert main(["run", "--matrix", str(path), "--out", str(out), "--executor", "ray"]) == 0
    results = by_label(out)
    assert {r["status"] for r in results.values()} == {"ok"} and set(results) == {"base", "lora r=4"}
    assert results["lora r=4"]["usage"]["tokens"] == 400


@pytest.mark.slow
def test_torchrun_cell_trains_on_two_processes_with_an_exact_budget(tmp_path, tiny_model_dir):
    path = write_matrix(tmp_path, tiny_model_dir, "[full]", tokens=777, extra_train=", nproc_per_node: 2")
    out = tmp_path / "out"
    assert main(["run", "--matrix", str(path), "--out", str(out)]) == 0
    results = by_label(out)
    assert {r["status"] for r in results.values()} == {"ok"}, [r.get("reason") for r in results.values()]
    usage = results["full"]["usage"]
    assert usage["world_size"] == 2 and usage["tokens"] == 777


def test_bf16_training_keeps_the_exact_budget_and_leaves_a_float32_forward(tiny_model_dir):
    from harness.config import DataSpec, ModelSpec, TrainSpec
    from harness.data import budgeted, encode, load_split
    from harness.models import load
    from harness.train import train

    model, tok = load(ModelSpec(id=str(tiny_model_dir)))
    rows = load_split(DataSpec(path=str(TINY_WORLD / "data" / "record")), TINY_WORLD, "train")[:40]
    examples = budgeted([encode(tok, r, 256) for r in rows], 900, seed=0)
    usage = train(model, tok, examples, TrainSpec(batch_size=4, learning_rate=1e-3, bf16=True), {"tokens": 900}, 0)
    assert usage["tokens"] == 900 and math.isfinite(usage["loss_last"])
    assert usage["loss_last"] < usage["loss_first"]
    # what evaluates the model next runs its layers in float32 unless eval.bf16 asks (accelerate's autocast
    # wrapper around forward must not outlive training: it did, and generate() then disagreed with forward)
    seen = []
    layer = next(m for m in model.modules() if isinstance(m, torch.nn.Linear))
    layer.register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    with torch.no_grad():
        model(input_ids=torch.tensor([[1, 2, 3]]))
    assert seen == [torch.float32]


def _trial(mult: float, loss: float | None, chosen: bool = False, extension: bool = False) -> dict:
    return {"multiplier": mult, "tuning_loss": loss, "chosen": chosen, "extension": extension}


def test_the_search_extends_past_an_edge_until_the_best_is_bracketed():
    from harness.tuning import next_multiplier

    grid = [_trial(0.3, 0.9), _trial(1.0, 0.5), _trial(3.0, 0.2)]
    assert next_multiplier(grid, 2) == pytest.approx(9.0)  # best at the top: one step of x3 further
    assert next_multiplier([_trial(0.3, 0.1), *grid[1:]], 0) == pytest.approx(0.09)  # at the bottom: x0.3
    assert next_multiplier(grid, 1) is None and next_multiplier(grid, None) is None
    assert next_multiplier(grid[:1], 0) is None  # one point has no step
    worse = [*grid, _trial(9.0, 0.4, extension=True)]  # the extension scored worse: 3.0 is now interior
    assert next_multiplier(worse, 2) is None
    diverged = [*grid, _trial(9.0, None, extension=True)]  # a diverged extension brackets it as well
    assert next_multiplier(diverged, 2) is None
    chosen = [dict(t, chosen=t["multiplier"] == 3.0) for t in worse]
    assert bracket(chosen, 2) == "extended"
    assert bracket([dict(t, chosen=t["multiplier"] == 1.0) for t in grid], 2) == "interior"
    still = [*grid, _trial(9.0, 0.1, extension=True), _trial(27.0, 0.05, True, extension=True)]
    assert bracket(still, 2) == "edge"  # the limit reached with the best still at the end
    assert bracket([_trial(1.0, 0.3, True)], 2) is None
