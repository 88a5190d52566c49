"""The scripts under benchmarks/: the fair evaluation benchmark runs end to end, the GPU script's CPU-safe parts."""

from __future__ import annotations

import importlib.util
import math
import os
import subprocess
import sys

import pytest
from conftest import REPO


def script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def env(tmp_path) -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), "HARNESS_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}


@pytest.mark.slow
def test_eval_overhead_tiny_runs_and_both_sides_agree(tmp_path):
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "eval_overhead.py"), "--world", "tiny",
                           "--limit", "2", "--bench-limit", "1", "--repeats", "1"],
                          env=env(tmp_path), capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    lines = done.stdout.splitlines()
    for suite in ("perplexity", "task", "benchmarks", "safety", "**total**"):
        assert any(line.startswith(f"| {suite} |") for line in lines), done.stdout
    assert any(line.startswith("ratio harness / reference: wall ") and "CPU" in line for line in lines), done.stdout
    assert "per-item results agree on 4 suites" in done.stdout
    assert "not captured" not in done.stdout  # the harness's lm-eval responses were compared too


def test_disagreements_flag_each_kind_of_difference():
    ev = script("eval_overhead")
    ours = {"ppl_general": ([10.0, 20.0], [5, 6]), "task_exact_match": [1.0, 0.0], "_predictions": ["a", "b"],
            "_refusal_benign_reply_ppl": [1.5, None]}
    assert ev.disagreements(ours, ours) == []
    assert ev.disagreements(ours, {**ours, "ppl_general": ([10.0005, 20.0], [5, 6])}) == []  # 5e-5 relative
    assert ev.disagreements(ours, {**ours, "ppl_general": ([10.01, 20.0], [5, 6])}) == [
        "ppl_general: NLLs differ beyond 0.0001 relative at items [0] (or token counts differ)"]
    assert ev.disagreements(ours, {**ours, "ppl_general": ([10.0, 20.0], [5, 7])})  # a token count differs
    assert ev.disagreements(ours, {**ours, "_predictions": ["a", "c"]}) == [
        "_predictions: item 1 differs (2 vs 2 items)"]
    assert ev.disagreements(ours, {**ours, "_refusal_benign_reply_ppl": [1.5, 2.0]})  # scored vs empty reply
    assert ev.disagreements({}, {"task_bleu": [1.0]}) == ["task_bleu: missing on the harness side"]
    sample = {"filter": "none", "doc_id": 0, "resps": [[[-1.25, False]], [[-2.5, True]]]}
    theirs = {"_samples": {"mmlu_x": [sample]}}
    assert ev.disagreements({}, theirs, {"mmlu_x": [sample]}) == []
    moved = {**sample, "resps": [[[-1.26, False]], [[-2.5, True]]]}
    assert ev.disagreements({}, theirs, {"mmlu_x": [moved]})[0].startswith("benchmarks mmlu_x doc 0: responses differ")


def test_eval_overhead_table_takes_medians_and_sums_them():
    ev = script("eval_overhead")
    times = {"task": {"harness": [(1.0, 0.5), (3.0, 1.5), (2.0, 1.0)], "reference": [(4.0, 2.0)] * 3},
             "safety": {"harness": [(1.0, 1.0)] * 3, "reference": [(2.0, 2.0), (6.0, 6.0), (4.0, 4.0)]}}
    rows, wall, cpu = ev.table(times)
    assert rows[2] == "| task | 2.00 | 4.00 | 0.50x | 1.00 | 2.00 | 0.50x |"
    assert rows[3] == "| safety | 1.00 | 4.00 | 0.25x | 1.00 | 4.00 | 0.25x |"
    assert rows[4] == "| **total** | 3.00 | 8.00 | 0.38x | 2.00 | 6.00 | 0.33x |"
    assert (wall, cpu) == (3 / 8, 2 / 6)


def test_eval_overhead_rejects_bad_arguments(capsys):
    ev = script("eval_overhead")
    with pytest.raises(SystemExit) as e:
        ev.main(["--world", "tiny", "--repeats", "0"])
    assert e.value.code == 2 and "--repeats must be at least 1" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        ev.main(["--world", "llama"])
    assert e.value.code == 2 and "invalid choice: 'llama'" in capsys.readouterr().err
    if not __import__("torch").cuda.is_available():
        with pytest.raises(SystemExit) as e:
            ev.main(["--world", "tiny", "--device", "cuda"])
        assert e.value.code == 2 and "--device cuda: this torch" in capsys.readouterr().err


TINY_SHAPE = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=4,
                  num_key_value_heads=2)


def test_gpu_bench_config_has_smollm2s_shape():
    config = script("gpu_bench").smollm2_config()
    assert (config.model_type, config.num_hidden_layers, config.hidden_size, config.intermediate_size) == (
        "llama", 30, 576, 1536)
    assert (config.num_attention_heads, config.num_key_value_heads, config.vocab_size) == (9, 3, 49152)
    assert config.tie_word_embeddings  # SmolLM2-135M ties its embeddings: 134.5M parameters, not 162.9M


def test_gpu_bench_model_folder_and_matrix_follow_the_real_matrix(tmp_path):
    from harness import models

    gb = script("gpu_bench")
    folder = gb.write_model(tmp_path / "m", **TINY_SHAPE)
    cells = gb.matrix_cells(folder, tmp_path, tokens=300, batch_size=None, eval_limit=3)
    assert [(c.strategy, c.params.get("r")) for c in cells] == [
        ("base", None), ("full", None), ("lora", 16), ("qlora", 16), ("adapter", None), ("prefix", None)]
    assert {c.train.batch_size for c in cells} == {2} and cells[1].train.learning_rate == 1e-4  # smollm2's
    assert cells[0].budget["tokens"] == 300 and cells[0].eval.limit == 3
    assert cells[0].eval.suites == ["perplexity", "task", "benchmarks", "safety"]
    model, tok = models.load(cells[0].model, tmp_path)
    assert model.config.vocab_size == 49152 and model.config.num_hidden_layers == 1


@pytest.mark.slow
def test_gpu_bench_trains_a_strategy_on_cpu_to_the_exact_budget(tmp_path):
    gb = script("gpu_bench")
    cells = gb.matrix_cells(gb.write_model(tmp_path / "m", **TINY_SHAPE), tmp_path, 300, None, 2)
    out = gb.train_one(next(c for c in cells if c.strategy == "lora"), tmp_path)
    assert out["tokens"] == 300 and out["steps"] >= 1 and out["peak_allocated_mb"] is None  # no CUDA here
    assert out["flops"] > 0 and out["estimate_mb"] > 0 and out["strategy"] == "lora r=16 lr=0.001"


FSDP_WORKER = """
import importlib.util, json, sys
from pathlib import Path
spec = importlib.util.spec_from_file_location("gpu_bench", sys.argv[1])
gb = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gb)
work = Path(sys.argv[2])
cells = gb.matrix_cells(gb.write_model(work / "m", **json.loads(sys.argv[3])), work, 300, None, 2)
gb.fsdp_runs(next(c for c in cells if c.strategy == "full"), work, work / "fsdp.json")
"""


@pytest.mark.slow
def test_gpu_bench_fsdp_part_runs_the_sharding_path_on_cpu_under_torchrun(tmp_path):
    """The `fsdp` part's runs with one gloo rank on CPU (gpu.sh runs them with one GPU): FSDP2 at world size 1,
    each mixed precision, the budget exact, rank 0's bytes beside the estimate, the gathered model plain."""
    import json

    (tmp_path / "worker.py").write_text(FSDP_WORKER, encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1",
                           str(tmp_path / "worker.py"), str(REPO / "benchmarks" / "gpu_bench.py"), str(tmp_path),
                           json.dumps(TINY_SHAPE)], env=env(tmp_path), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    doc = json.loads((tmp_path / "fsdp.json").read_text())
    assert [r["mixed_precision"] for r in doc["runs"]] == ["bf16", "none"]
    for r in doc["runs"]:
        assert "error" not in r, r["error"]
        assert (r["backend"], r["world_size"], r["tokens"]) == ("fsdp", 1, 300)
        rank0 = r["per_rank"][0]
        assert rank0["local_fraction"] == 1.0 and rank0["grad_bytes"] == rank0["param_bytes"]  # all trainable
        assert rank0["optim_bytes"] == 2 * rank0["param_bytes"]  # AdamW: two fp32 states per parameter
        assert rank0["param_bytes"] / 2**20 == pytest.approx(r["estimate"]["weights_mb"], abs=0.1)
        assert r["gathered"]["dtensors"] == 0
    losses = {r["mixed_precision"]: r["gathered"] for r in doc["runs"]}
    assert losses["none"]["loss_gathered"] == pytest.approx(losses["none"]["loss_sharded"], rel=1e-5)
    assert losses["bf16"]["loss_gathered"] == pytest.approx(losses["bf16"]["loss_sharded"], rel=0.05)
    text = "\n".join(script("gpu_bench").fsdp_rows(doc))
    assert "| bf16 | 300 |" in text and "| fsdp (1) | 1.000 |" in text


def test_gpu_bench_report_computes_mfu_and_names_missing_parts(tmp_path):
    import json

    gb = script("gpu_bench")
    (tmp_path / "matmul.json").write_text(json.dumps({"size": 8192, "iters": 30, "seconds": 1.0, "tflops": 500.0,
                                                      "device": "NVIDIA H200", "torch": "2.13", "cuda": "12.8"}))
    (tmp_path / "meta.json").write_text(json.dumps({"model": "SmolLM2-135M shape", "tokens": 40000,
                                                    "command": "benchmarks/gpu.sh", "date": "2026-12-01"}))
    (tmp_path / "train-lora.json").write_text(json.dumps(
        {"strategy": "lora r=16", "tokens": 40000, "seconds": 4.0, "tokens_per_second": 10000.0, "flops": 2e14,
         "peak_allocated_mb": 3000.0, "estimate_mb": 2000.0, "batch_size": 2}))
    (tmp_path / "train-qlora.json").write_text(json.dumps({"strategy": "qlora r=16", "skipped": "not applicable"}))
    (tmp_path / "eval.json").write_text(json.dumps({"limit": 16, "seconds": {"perplexity": 1.5, "task": 2.25}}))
    assert "| bf16 | not run (failed or timed out: see gpu.log) |" in gb.markdown(tmp_path)  # no fsdp.json
    mib = 2**20
    (tmp_path / "fsdp.json").write_text(json.dumps({"runs": [
        {"mixed_precision": "bf16", "tokens": 40000, "tokens_per_second": 8000.0, "backend": "fsdp", "world_size": 1,
         "per_rank": [{"rank": 0, "param_bytes": 513 * mib, "grad_bytes": 513 * mib, "optim_bytes": 1026 * mib,
                       "local_fraction": 1.0}],
         "estimate": {"weights_mb": 513.0, "gradients_mb": 513.0, "optimizer_mb": 1026.0, "activations_mb": 900.0},
         "peak_allocated_mb": 3500.0, "estimate_mb": 2952.0,
         "gathered": {"dtensors": 0, "loss_sharded": 10.81234, "loss_gathered": 10.80011}}]}))
    text = gb.markdown(tmp_path)
    assert text.startswith("## GPU: NVIDIA H200 (2026-12-01)")
    assert "budget 40,000 tokens per strategy, batch 2;" in text and "**500 TFLOP/s**" in text
    # 2e14 FLOPs in 4 s = 50 TFLOP/s = 10% of 500; peak 3,000 MB over the 2,000 MB estimate
    assert "| lora r=16 | 40,000 | 10,000 | 50.0 | 10.0% | 3,000 | 2,000 | 1.50x |" in text
    assert "| qlora r=16 | not applicable |" in text
    assert "| full | not run (failed or timed out: see gpu.log) |" in text
    assert "| perplexity (limit 16) | 1.5 |" in text and "| **total** | 3.8 |" in text
    # FSDP2: rank 0's bytes as the estimate divides them, the peak against the total, the gather; `none` never ran
    assert ("| bf16 | 40,000 | 8,000 | fsdp (1) | 1.000 | 513 + 513 + 1,026 = 2,052 | 513 + 513 + 1,026 = 2,052 | "
            "3,500 | 2,952 | 1.19x | 0 DTensors; loss 10.8001 (sharded 10.8123) |") in text
    assert "| none | not run (the part stopped before it: see gpu.log) |" in text
    assert gb.main(["report", "--dir", str(tmp_path), "--device", "H200 (lent)", "--output",
                    str(tmp_path / "gpu-results.md")]) == 0
    assert (tmp_path / "gpu-results.md").read_text().startswith("## GPU: H200 (lent) (2026-12-01)")


def test_gpu_bench_arguments_and_no_cuda_fail_clearly(tmp_path, capsys):
    import torch

    gb = script("gpu_bench")
    with pytest.raises(SystemExit) as e:
        gb.parse(["train", "--model", "m", "--strategy", "bitfit", "--json", "x.json"])
    assert e.value.code == 2 and "invalid choice: 'bitfit'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        gb.parse(["train", "--model", "m", "--strategy", "lora", "--tokens", "0", "--json", "x.json"])
    assert e.value.code == 2 and "--tokens must be at least 1, got 0" in capsys.readouterr().err
    args = gb.parse(["eval", "--model", "m", "--json", "x.json"])
    assert (args.tokens, args.eval_limit, args.batch_size) == (6000, 16, None)
    assert gb.parse(["fsdp", "--model", "m", "--tokens", "500", "--json", "x.json"]).tokens == 500
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the no-CUDA message cannot be shown")
    for part in (["matmul"], ["fsdp", "--model", str(tmp_path)]):
        with pytest.raises(SystemExit) as e:
            gb.main([*part, "--json", str(tmp_path / "m.json")])
        assert "gpu_bench: CUDA is not available" in str(e.value) and "needs one NVIDIA GPU" in str(e.value)
        assert not (tmp_path / "m.json").exists()


def test_gpu_sh_stops_with_a_message_without_a_gpu(tmp_path):
    import shutil

    if shutil.which("nvidia-smi"):
        pytest.skip("nvidia-smi is on PATH here")
    done = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu.sh")], env={**env(tmp_path), "OUT": str(tmp_path)},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "gpu.sh: nvidia-smi not found: this script needs an NVIDIA GPU and its driver" in done.stderr


def test_eval_overhead_skips_a_matrix_whose_data_is_absent(tmp_path, capsys):
    import yaml

    doc = yaml.safe_load((REPO / "matrices" / "smoke.yaml").read_text("utf-8"))
    doc["eval"]["general_text"] = "nowhere/wiki.test.tokens"
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    assert script("eval_overhead").main(["--matrix", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"skipped: {path}: data that is not here: {tmp_path / 'nowhere/wiki.test.tokens'}")


@pytest.mark.slow
def test_bf16_agreement_on_the_tiny_world_times_compares_and_trains_both_precisions(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    bench = script("bf16_agreement")
    assert bench.main(["--world", "tiny", "--limit", "2", "--bench-limit", "1", "--repeats", "1",
                       "--train-tokens", "300"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    for suite in ("perplexity", "task", "benchmarks", "safety", "**total**"):
        assert any(line.startswith(f"| tiny-world | {suite} | ") and line.endswith("x |") for line in lines), out
    for metric, per_item in (("ppl_general", "NLL max "), ("task_rouge_l", "max abs "), ("mmlu_cloze_acc", "/3 flip"),
                             ("refusal_harmful", "/2 flip"), ("_refusal_benign_replies", "/2 differ"),
                             ("_refusal_benign_reply_ppl", "max ")):
        assert any(f"| {metric} |" in line and per_item in line for line in lines), (metric, out)
    trained = [line for line in lines if line.startswith("| tiny-world | lora r=16") or
               line.startswith("| tiny-world | full")]
    assert len(trained) == 2 and all(line.endswith("% |") for line in trained), out
    results = tmp_path / "RESULTS.md"
    bench.append_results(results, "tiny-world", [line for line in lines if line.startswith("|")], "python x")
    assert "## bf16 autocast against float32: tiny-world (" in results.read_text("utf-8")


def test_bf16_agreement_counts_flips_and_relative_moves():
    bench = script("bf16_agreement")

    def metric(value: float) -> dict:
        return {"value": value, "n": 2}

    fp32 = ({"ppl_general": metric(2.0), "task_exact_match": metric(0.5), "task_rouge_l": metric(0.4)},
            {"ppl_general": ([10.0, 20.0], [5, 6]), "task_exact_match": [1.0, 0.0], "task_rouge_l": [0.5, 0.3],
             "_predictions": ["a", "b"], "_refusal_benign_reply_ppl": [2.0, None]})
    bf16 = ({"ppl_general": metric(2.02), "task_exact_match": metric(0.0), "task_rouge_l": metric(0.45)},
            {"ppl_general": ([10.1, 20.0], [5, 6]), "task_exact_match": [0.0, 0.0], "task_rouge_l": [0.5, 0.4],
             "_predictions": ["a", "c"], "_refusal_benign_reply_ppl": [2.1, 1.5]})
    rows = {r["metric"]: r for r in bench.agreement(fp32, bf16)}
    assert (rows["ppl_general"]["change"], rows["ppl_general"]["items"]) == ("+1.000%", "NLL max 1.000%")
    assert (rows["task_exact_match"]["change"], rows["task_exact_match"]["items"]) == ("-0.500", "1/2 flip")
    assert (rows["task_rouge_l"]["change"], rows["task_rouge_l"]["items"]) == ("+0.050", "max abs 0.100")
    assert rows["_predictions"]["items"] == "1/2 differ"
    assert rows["_refusal_benign_reply_ppl"]["items"] == "max 5.000%, 1 scored on one side"
    assert bench.loss_difference({"fp32": [2.0, 1.0], "bf16": [2.0, 1.1]}) == pytest.approx(0.1)


def test_gate_calibration_plants_exactly_the_effect_it_names(tmp_path):
    import random

    from fake_results import binary, ppl_items, save_cell

    from harness import store
    from harness.report.compare import compare

    cal = script("gate_calibration")
    for side, seeds in (("a", (0, 1)), ("b", (2, 3))):
        for s in seeds:
            save_cell(tmp_path / side, "lora r=16", "lora", {"task_exact_match": binary(0.8, 60, s),
                                                             "ppl_general": ppl_items(2.0, seed=s)}, seed=s)
    before = {r["id"]: r for r in store.load_all(tmp_path / "b")}
    cal.plant(tmp_path / "b", "ppl_general", 0.5, random.Random(0))
    cal.plant(tmp_path / "b", "task_exact_match", 0.5, random.Random(0))
    for r in store.load_all(tmp_path / "b"):  # stored anew with valid checksums, each seed worse by the effect
        assert store.damage(tmp_path / "b", r["id"]) is None
        old = before[r["id"]]["metrics"]
        assert r["metrics"]["ppl_general"]["value"] == pytest.approx(old["ppl_general"]["value"] * math.exp(0.5))
        items = store.load_items(tmp_path / "b", r["id"])["task_exact_match"]
        assert r["metrics"]["task_exact_match"]["value"] == pytest.approx(sum(items) / 60)
        assert 0.3 < old["task_exact_match"]["value"] - r["metrics"]["task_exact_match"]["value"] < 0.7
    # both the gate and the rule from before see a regression that large; the clean side is untouched
    assert cal.item_rule(tmp_path / "a", tmp_path / "b") == {"task_exact_match": True, "ppl_general": True}
    assert {t["metric"] for t in compare(tmp_path / "a", tmp_path / "b").tests if t["verdict"] == "regressed"} == {
        "task_exact_match", "ppl_general"}
    assert cal.clopper_pearson(0, 100)[1] == pytest.approx(0.0362, abs=1e-4)
    assert cal.clopper_pearson(5, 100) == pytest.approx((0.0164, 0.1128), abs=1e-4)


def _fsdp_vs_ddp_cells(tmp_path, fsdp_task: float = 0.7) -> tuple[list[dict], list[dict]]:
    """Fake results of fsdp-smoke under fsdp and under ddp: base, full and lora r=4, the same items on both sides
    but the FSDP full cell's task scores, drawn at the rate `fsdp_task`."""
    from fake_results import binary, ppl_items, save_cell

    from harness import store

    def usage(backend: str, share: float) -> dict:
        held = [int(1_000_000 * share), int(1_000_000 * share), int(2_000_000 * share)]
        return {"tokens": 6000, "backend": backend, "world_size": 2, "peak_memory_mb": 150.0, "per_rank": [
            {"rank": r, "param_bytes": held[0], "grad_bytes": held[1], "optim_bytes": held[2],
             "local_fraction": share, "peak_memory_mb": 150.0 + 10 * share, "peak_rss_mb": 700.0} for r in (0, 1)]}

    for backend, share in (("fsdp", 0.5), ("ddp", 1.0)):
        folder = tmp_path / backend
        save_cell(folder, "base", "base", {"task_exact_match": binary(0.2, 32, 9), "ppl_general": ppl_items(3.0)})
        for label, strategy, params, seed in (("full lr=0.0003", "full", {}, 1), ("lora r=4 lr=0.002", "lora",
                                                                                 {"r": 4}, 2)):
            rate = fsdp_task if backend == "fsdp" and strategy == "full" else 0.7
            save_cell(folder, label, strategy, {"task_exact_match": binary(rate, 32, seed),
                                                "ppl_general": ppl_items(2.0, seed=seed)}, params=params,
                      usage=usage(backend, share))
    return store.load_all(tmp_path / "fsdp"), store.load_all(tmp_path / "ddp")


def test_fsdp_vs_ddp_puts_every_fsdp_metric_in_the_ddp_interval_and_shows_each_rank(tmp_path):
    fv = script("fsdp_vs_ddp")
    fsdp, ddp = _fsdp_vs_ddp_cells(tmp_path)
    lines, failures = fv.compare_cells(fsdp, ddp)
    assert failures == []
    rows = [line.split() for line in lines if line.startswith(("full", "lora"))]
    metric_rows = [r for r in rows if r[-1] in ("yes", "NO")]  # cell, metric, FSDP, DDP, [low, high], inside
    named = {(" ".join(r[:-6]), r[-6], r[-1]) for r in metric_rows}
    assert named == {(cell, metric, "yes") for cell in ("full lr=0.0003", "lora r=4 lr=0.002")
                     for metric in ("ppl_general", "task_exact_match")}  # the base cell is not compared
    ddp_full = next(r for r in ddp if r["label"] == "full lr=0.0003")["metrics"]["task_exact_match"]
    assert (f"[{ddp_full['ci_low']:.4f}, {ddp_full['ci_high']:.4f}]"
            in next(line for line in lines if line.startswith("full") and "task_exact_match" in line))
    rank_rows = [r[-8:] for r in rows if r[-1] == "700"]  # rank, held bytes FSDP, DDP, ratio, fraction, peaks, RSS
    assert rank_rows == [[str(rank), "2,000,000", "4,000,000", "0.500", "0.500", "155.0", "160.0", "700"]
                         for rank in (0, 1)] * 2


def test_fsdp_vs_ddp_fails_a_metric_outside_the_interval_and_a_cell_it_cannot_pair(tmp_path):
    fv = script("fsdp_vs_ddp")
    fsdp, ddp = _fsdp_vs_ddp_cells(tmp_path, fsdp_task=0.05)
    lines, failures = fv.compare_cells(fsdp, ddp)
    assert len(failures) == 1 and failures[0].startswith("full lr=0.0003 task_exact_match: FSDP 0.0")
    assert "outside the DDP interval" in failures[0]
    assert any(line.startswith("full") and "task_exact_match" in line and line.endswith("NO") for line in lines)
    lines, failures = fv.compare_cells(fsdp, [r for r in ddp if not r["label"].startswith("lora")])
    assert "fsdp cell lora r=4 lr=0.002: no ddp cell of the same model, strategy, parameters and seed" in failures
    wrong = [{**r, "usage": {**r["usage"], "backend": "ddp"}} if r["label"].startswith("lora") else r for r in fsdp]
    assert "fsdp cell lora r=4 lr=0.002: trained as ddp over 2 ranks, not fsdp over 2" in fv.compare_cells(wrong,
                                                                                                           ddp)[1]
    failed = [{**r, "status": "failed", "reason": "boom"} if r["label"].startswith("lora") else r for r in ddp]
    assert "ddp cell lora r=4 lr=0.002: failed (boom)" in fv.compare_cells(fsdp, failed)[1]
    no_ranks = [{**r, "usage": {**r["usage"], "per_rank": []}} for r in fsdp]
    assert any("usage.per_rank does not record" in f for f in fv.compare_cells(no_ranks, ddp)[1])
    assert fv.compare_cells([], ddp)[1][-1] == "no trained fsdp cell"


def test_fsdp_vs_ddp_runs_the_shipped_matrix_and_its_ddp_twin(tmp_path):
    from pathlib import Path

    import yaml

    from harness.config import load_matrix

    fv = script("fsdp_vs_ddp")
    runs = fv.matrix_commands(tmp_path / "out")
    assert [(b, folder) for b, _, folder in runs] == [("fsdp", tmp_path / "out" / "fsdp"),
                                                      ("ddp", tmp_path / "out" / "ddp")]
    for _, cmd, folder in runs:
        assert cmd[1:5] == ["-m", "harness.cli", "run", "--matrix"] and cmd[-2:] == ["--out", str(folder)]
    shipped, twin = (Path(cmd[5]) for _, cmd, _ in runs)
    assert shipped == REPO / "matrices" / "fsdp-smoke.yaml"
    original, copy = (yaml.safe_load(p.read_text("utf-8")) for p in (shipped, twin))
    assert original["train"]["distributed"] == {"backend": "fsdp"}
    copy["train"]["distributed"]["backend"] = "fsdp"
    assert copy == original  # every other key identical
    assert load_matrix(twin).train.backend == "ddp"


def test_mc_formulations_scores_each_multiple_choice_task_in_both_forms(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    bench = script("mc_formulations")
    assert bench.main(["--model", "tiny-world", "--matrix", str(REPO / "matrices" / "smoke.yaml")]) == 0
    rows = [line.split(" | ") for line in capsys.readouterr().out.splitlines() if line.startswith("| tiny-world |")]
    found = {(r[1], r[2]) for r in rows}
    for form, metric in (("letter", "mmlu_acc"), ("letter", "ceval_acc"), ("cloze", "mmlu_cloze_acc"),
                         ("cloze", "mmlu_cloze_acc_norm"), ("cloze", "ceval_cloze_acc")):
        assert (form, metric) in found, (form, metric, found)
    assert not any("gsm8k" in r[2] for r in rows)  # generation tasks have no form: left out
    assert all(r[5] in ("yes", "no", "below") for r in rows)
