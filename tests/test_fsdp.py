"""train.distributed (issue 27): the schema, the torchrun command, deepspeed's pass-through, preflight's refusals,
and FSDP2 on CPU under torchrun with 2 gloo ranks, its sharding verified (and Trainer's own fsdp= caught not
sharding)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness.config import ConfigError, TrainSpec

REPO = Path(__file__).resolve().parent.parent


def test_the_distributed_block_parses_and_leaves_old_dumps_alone():
    plain = TrainSpec(nproc_per_node=2)
    assert "distributed" not in plain.model_dump() and plain.backend == "ddp" and plain.world == 2
    fsdp = TrainSpec.model_validate({"distributed": {"backend": "fsdp", "nproc_per_node": 2}})
    assert fsdp.nproc_per_node == 2 and fsdp.backend == "fsdp"  # the alias lands in train.nproc_per_node
    assert fsdp.model_dump()["distributed"]["fsdp"]["reshard_after_forward"] is True
    assert TrainSpec.model_validate_json(fsdp.model_dump_json()) == fsdp  # the cell file the child reads
    multi = TrainSpec.model_validate({"nproc_per_node": 1, "distributed": {
        "backend": "fsdp", "nnodes": 2, "rdzv_endpoint": "node0:29500"}})
    assert multi.world == 2
    for bad, why in [({"nproc_per_node": 2, "distributed": {"backend": "deepspeed"}}, "deepspeed.config"),
                     ({"nproc_per_node": 3, "distributed": {"nproc_per_node": 2}}, "differ"),
                     ({"nproc_per_node": 2, "distributed": {"nnodes": 2}}, "rdzv_endpoint"),
                     ({"nproc_per_node": 2, "distributed": {"fsdp": {"cpu_offload": True}}}, "backend fsdp only"),
                     ({"nproc_per_node": 2, "distributed": {"backend": "fsdp", "shard": 1}}, "Extra inputs"),
                     ({"nproc_per_node": 2, "distributed": {"backend": "fsdp", "fsdp": {"shard_size": 3}}},
                      "shard_size 3 must divide the world size 2")]:
        with pytest.raises(ValueError, match=why):
            TrainSpec.model_validate(bad)


def _write(tmp_path: Path, model_dir, train: str, strategies: str = "[full]", extra: str = "") -> Path:
    path = tmp_path / "m.yaml"
    path.write_text(textwrap.dedent(f"""\
        name: fsdp-test
        models: ["{model_dir}"]
        data: {{path: "{REPO / 'harness/zoo/tiny-world/data/record'}"}}
        budget: {{tokens: 400}}
        train: {train}
        strategies: {strategies}
        eval: {{suites: [perplexity], general_text: "{REPO / 'harness/zoo/tiny-world/data/general/test.jsonl'}",
               limit: 4, inference: false}}
        {extra}
        """), encoding="utf-8")
    return path


def test_old_matrices_keep_their_cell_ids_and_overrides_stay_typed(tmp_path, tiny_model_dir):
    from harness.config import load_matrix
    from harness.matrix import expand

    old = expand(load_matrix(_write(tmp_path, tiny_model_dir, "{nproc_per_node: 2}")), tmp_path)
    assert all("distributed" not in c.model_dump()["train"] for c in old)
    path = _write(tmp_path, tiny_model_dir, "{nproc_per_node: 2}",
                  "[full, {name: lora, train: {distributed: {backend: fsdp}}}]")
    cells = expand(load_matrix(path), tmp_path)
    assert [c.id for c in cells[:2]] == [c.id for c in old]  # base and full: the same ids as before the key
    assert cells[2].train.backend == "fsdp" and cells[2].train.distributed.fsdp.mixed_precision == "none"


def test_cell_command_compiles_the_rendezvous(tmp_path, tiny_model_dir):
    from harness.config import load_matrix
    from harness.matrix import expand
    from harness.runner import cell_command

    one = expand(load_matrix(_write(tmp_path, tiny_model_dir, "{nproc_per_node: 2, distributed: {backend: fsdp}}")),
                 tmp_path)[1]
    cmd = cell_command(one, Path("c.json"), Path("out"))
    assert "--standalone" in cmd and "--nproc_per_node=2" in cmd
    multi = expand(load_matrix(_write(tmp_path, tiny_model_dir, "{nproc_per_node: 4, distributed: {backend: fsdp, "
                                                                 "nnodes: 2, rdzv_endpoint: 'node0:29500'}}")),
                   tmp_path)[1]
    cmd = cell_command(multi, Path("c.json"), Path("out"))
    assert "--standalone" not in cmd and {"--nnodes=2", "--rdzv_backend=c10d", "--rdzv_endpoint=node0:29500",
                                          "--nproc_per_node=4", f"--rdzv_id={multi.id}"} <= set(cmd)


def test_the_dry_runs_memory_estimate_is_per_rank_for_each_backend(tmp_path, tiny_model_dir):
    """Weights, gradients and optimizer states are divided over the shard group as each backend shards them
    (FSDP2: all three; ZeRO-1: optimizer; ZeRO-2: and gradients; DDP: nothing); activations stay per rank."""
    from harness.config import load_matrix
    from harness.matrix import expand
    from harness.memory import estimate

    (tmp_path / "ds.json").write_text(json.dumps({"zero_optimization": {"stage": 2}}), encoding="utf-8")
    trains = {"ddp": "{nproc_per_node: 2}", "fsdp": "{nproc_per_node: 2, distributed: {backend: fsdp}}",
              "zero1": "{nproc_per_node: 2, distributed: {backend: deepspeed, deepspeed: {config: "
                       "{zero_optimization: {stage: 1}}}}}",
              "zero2": "{nproc_per_node: 2, distributed: {backend: deepspeed, deepspeed: {config: ds.json}}}",
              "hsdp": "{nproc_per_node: 2, distributed: {backend: fsdp, fsdp: {shard_size: 1}}}"}
    est = {}
    for name, train in trains.items():
        cell = expand(load_matrix(_write(tmp_path, tiny_model_dir, train)), tmp_path)[1]
        est[name] = estimate(cell)
    ddp = est["ddp"]
    assert ddp["world"] == 2 and ddp["sharded"] == [] and ddp["weights_mb"] > 0
    halved = {"fsdp": ("weights_mb", "gradients_mb", "optimizer_mb"), "zero1": ("optimizer_mb",),
              "zero2": ("optimizer_mb", "gradients_mb")}
    assert est["hsdp"]["shard_group"] == 1 and est["fsdp"]["shard_group"] == 2  # a hybrid shard's group divides
    assert est["hsdp"]["weights_mb"] == ddp["weights_mb"] and est["hsdp"]["sharded"] == est["fsdp"]["sharded"]
    for name, parts in halved.items():
        assert sorted(est[name]["sharded"]) == sorted(parts), name
        for key in ("weights_mb", "gradients_mb", "optimizer_mb", "activations_mb"):
            want = ddp[key] / 2 if key in parts else ddp[key]
            assert est[name][key] == pytest.approx(want, abs=0.1), (name, key)


def test_the_estimate_counts_what_each_backend_allocates_beyond_its_shards(tmp_path, monkeypatch):
    """FSDP2 (harness/memory.py's docstring): the root's parameters and gradient, the two layers gathered while
    one layer's gradients are computed, those gradients, the held reduce-scatter input and, on gloo, one staging
    copy of the largest group per worker thread; DDP: buckets as large as the gradients; alone: nothing, except
    FSDP2 over one rank under torchrun. Sizes from the tiny world's model itself (4 layers, tied embedding,
    float32)."""
    import torch
    from transformers import AutoModelForCausalLM

    from harness.config import load_matrix
    from harness.matrix import expand
    from harness.memory import MB, estimate

    if torch.cuda.is_available():
        pytest.skip("gloo's staging is counted on CPU only")
    model_dir = REPO / "harness" / "zoo" / "tiny-world" / "model"
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    root = sum(p.numel() for p in model.parameters()) - sum(p.numel() for p in model.model.layers.parameters())
    layer = sum(p.numel() for p in model.model.layers[0].parameters())
    monkeypatch.delenv("LOCAL_RANK", raising=False)

    def est(train: str) -> dict:
        return estimate(expand(load_matrix(_write(tmp_path, model_dir, train)), tmp_path)[1])

    for train in ("{}", "{nproc_per_node: 1, distributed: {backend: fsdp}}"):
        assert (est(train)["unsharded_mb"], est(train)["comm_buffers_mb"]) == (0, 0), train
    ddp = est("{nproc_per_node: 2}")
    assert (ddp["unsharded_mb"], ddp["comm_buffers_mb"]) == (0, ddp["gradients_mb"])
    cases = {"{}": (4, 4, 4), "{mixed_precision: bf16}": (2, 4, 2)}  # bytes: gathered, reduced, staged
    for fsdp, (held, reduced, staged) in cases.items():
        e = est(f"{{nproc_per_node: 2, distributed: {{backend: fsdp, fsdp: {fsdp}}}}}")
        assert e["unsharded_mb"] == pytest.approx((2 * root + 3 * layer) * held / MB, abs=0.1), fsdp
        assert e["comm_buffers_mb"] == pytest.approx((layer * reduced + 2 * root * staged) / MB, abs=0.1), fsdp
        parts = [v for k, v in e.items() if k.endswith("_mb") and k != "total_mb"]
        assert e["total_mb"] == pytest.approx(sum(parts), abs=0.1)
    kept = est("{nproc_per_node: 2, distributed: {backend: fsdp, fsdp: {reshard_after_forward: false}}}")
    assert kept["unsharded_mb"] == pytest.approx((2 * root + 4 * layer + layer) * 4 / MB, abs=0.1)  # all 4 kept
    monkeypatch.setenv("LOCAL_RANK", "0")  # FSDP2 over one rank (benchmarks/gpu_bench.py fsdp): no gloo staging
    alone = est("{nproc_per_node: 1, distributed: {backend: fsdp}}")
    assert alone["unsharded_mb"] == pytest.approx((2 * root + 3 * layer) * 4 / MB, abs=0.1)
    assert alone["comm_buffers_mb"] == pytest.approx(layer * 4 / MB, abs=0.1)


def test_deepspeed_config_is_validated_and_passed_to_training_arguments(tmp_path):
    from harness.distributed import deepspeed_problem
    from harness.train import training_kwargs

    good = {"zero_optimization": {"stage": 2}, "train_micro_batch_size_per_gpu": "auto"}
    assert deepspeed_problem(good, tmp_path) is None
    (tmp_path / "ds.json").write_text(json.dumps(good), encoding="utf-8")
    assert deepspeed_problem("ds.json", tmp_path) is None
    (tmp_path / "bad.json").write_text("{stage: 2", encoding="utf-8")
    assert "not JSON" in deepspeed_problem("bad.json", tmp_path)
    assert "cannot read" in deepspeed_problem("missing.json", tmp_path)
    assert "0, 1, 2 or 3" in deepspeed_problem({"zero_optimization": {"stage": 4}}, tmp_path)
    assert "0, 1, 2 or 3" in deepspeed_problem({}, tmp_path)
    spec = TrainSpec.model_validate({"nproc_per_node": 2, "distributed": {"backend": "deepspeed",
                                                                          "deepspeed": {"config": "ds.json"}}})
    kwargs = training_kwargs(spec, 10, 0, tmp_path / "w", True, root=tmp_path, world=2)
    assert kwargs["deepspeed"] == str(tmp_path / "ds.json")
    spec = spec.model_copy(update={"distributed": spec.distributed.model_copy(
        update={"deepspeed": spec.distributed.deepspeed.model_copy(update={"config": good})})})
    assert training_kwargs(spec, 10, 0, tmp_path / "w", True, root=tmp_path, world=2)["deepspeed"] == good
    assert "deepspeed" not in training_kwargs(TrainSpec(nproc_per_node=2), 10, 0, tmp_path, True, world=2)


def test_preflight_refuses_what_cannot_work_with_the_reason(tmp_path, tiny_model_dir):
    from harness.distributed import deepspeed_installed
    from harness.preflight import check

    (tmp_path / "ds.json").write_text(json.dumps({"zero_optimization": {"stage": 5}}), encoding="utf-8")
    path = _write(tmp_path, tiny_model_dir, "{nproc_per_node: 2, distributed: {backend: deepspeed, "
                                            "deepspeed: {config: ds.json}}}")
    with pytest.raises(ConfigError) as e:
        check(path)
    assert "zero_optimization.stage must be 0, 1, 2 or 3, not 5" in str(e.value)
    assert ("deepspeed package is not installed" in str(e.value)) != deepspeed_installed()
    path = _write(tmp_path, tiny_model_dir, "{nproc_per_node: 2, distributed: {backend: fsdp}}",
                  "[full, {name: qlora, params: {r: 4}}]", extra="tuning: {lr_multipliers: [0.5, 2.0]}")
    with pytest.raises(ConfigError) as e:
        check(path)
    text = str(e.value)
    assert "tuning.lr_multipliers" in text
    import torch

    assert ("cannot train qlora" in text) != torch.cuda.is_available()
    path = _write(tmp_path, tiny_model_dir, "{nproc_per_node: 2, distributed: {backend: fsdp}}",
                  "[full, {name: lora, params: {r: 4}}, {name: dora, params: {r: 4}}, prefix, prompt]")
    check(path)  # each of these trains under FSDP2 on CPU (tests below, benchmarks/fsdp_vs_ddp.py)
    with pytest.raises(ConfigError, match="at least 2"):
        check(_write(tmp_path, tiny_model_dir, "{distributed: {backend: fsdp}}"))


def test_the_check_names_a_ddp_wrapped_model_as_not_sharded(tiny_model, monkeypatch):
    import torch
    import torch.distributed as dist

    from harness.distributed import local_fraction, sharding_problem

    model, _ = tiny_model
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "29581")
    dist.init_process_group("gloo", rank=0, world_size=1)
    try:
        ddp = torch.nn.parallel.DistributedDataParallel(model)
        assert local_fraction(ddp) == 1.0
        assert "DistributedDataParallel" in sharding_problem(ddp, 2, [1.0, 1.0])
        assert "holds 1.000, 1.000" in sharding_problem(model, 2, [1.0, 1.0])
        assert sharding_problem(model, 2, [0.5, 0.5]) is None
    finally:
        dist.destroy_process_group()


WORKER = """
import json, sys
from pathlib import Path
import strategies  # noqa: F401
from transformers import set_seed
from harness.config import DataSpec, ModelSpec, TrainSpec
from harness.data import budgeted, encode, load_split
from harness.distributed import full_model, rank, NotSharded
from harness.matrix import resolve_params
from harness.models import load
from harness.train import train
from strategies.base import STRATEGIES

model_dir, mode, strategy, params, out = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4]), sys.argv[5]
world = Path(sys.argv[6])
set_seed(0)
strat = STRATEGIES.get(strategy)()
p = resolve_params(strat.Params, params)
model, tok = load(ModelSpec(id=model_dir))
model = strat.prepare(model, p)
rows = load_split(DataSpec(path=str(world / "data" / "record")), world, "train")[:60]
examples = budgeted([encode(tok, r, 256) for r in rows], 777, seed=0)
if mode == "trainer-fsdp":  # transformers' own fsdp= on CPU, checked by the harness
    import harness.train as ht
    from transformers import Trainer, TrainingArguments
    from harness.data import collator
    from harness.distributed import ShardCheck
    args = TrainingArguments(**ht.training_kwargs(TrainSpec(batch_size=4, learning_rate=1e-3), 3, 0,
                                                  Path(out).parent / "w", True), fsdp="full_shard")
    check = ShardCheck(2)
    trainer = Trainer(model=model, args=args, train_dataset=examples, data_collator=collator(tok, False, model)[0],
                      callbacks=[check])
    check.trainer = trainer
    try:
        trainer.train()
        result = {"caught": None}
    except NotSharded as e:
        result = {"caught": str(e), "wrapped": type(trainer.model_wrapped).__name__}
else:
    d = {"backend": "fsdp", "fsdp": {"shard_size": 1}} if mode == "hsdp" else {"backend": mode}
    spec = TrainSpec.model_validate({"batch_size": 4, "learning_rate": 1e-3, "nproc_per_node": 2, "distributed": d})
    usage = train(model, tok, examples, spec, {"tokens": 777}, 0)
    if mode in ("fsdp", "hsdp"):
        model = full_model(model, lambda: strat.prepare(load(ModelSpec(id=model_dir))[0], p))
    import torch
    b = examples[0]
    with torch.no_grad():
        loss = model(input_ids=torch.tensor([b["input_ids"]]), labels=torch.tensor([b["labels"]])).loss.item() \\
            if rank() == 0 else None
    result = {**{k: usage[k] for k in ("tokens", "loss_curve", "per_rank", "backend")}, "loss": loss,
              "dtensors": sum(type(p).__name__ == "DTensor" for p in model.parameters()) if rank() == 0 else None}
if rank() == 0:
    Path(out).write_text(json.dumps(result))
"""


def _torchrun(tmp_path, model_dir, mode, strategy="full", params=None) -> dict:
    script = tmp_path / "worker.py"
    script.write_text(WORKER, encoding="utf-8")
    out = tmp_path / f"{mode}-{strategy}.json"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(script), str(model_dir), mode, strategy, json.dumps(params or {}), str(out),
                           str(REPO / "harness/zoo/tiny-world")], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0 and out.is_file(), done.stderr[-3000:]
    return json.loads(out.read_text())


@pytest.mark.slow
def test_trainers_own_fsdp_on_cpu_does_not_shard_and_the_harness_says_so(tmp_path, tiny_model_dir):
    result = _torchrun(tmp_path, tiny_model_dir, "trainer-fsdp")
    assert result["wrapped"] == "DistributedDataParallel"
    assert "silently did not shard" in result["caught"]


@pytest.mark.slow
@pytest.mark.parametrize("strategy,params", [("full", {}), ("lora", {"r": 4})])
def test_fsdp_shards_half_per_rank_and_matches_ddp(tmp_path, tiny_model_dir, strategy, params):
    ddp = _torchrun(tmp_path, tiny_model_dir, "ddp", strategy, params)
    fsdp = _torchrun(tmp_path, tiny_model_dir, "fsdp", strategy, params)
    assert ddp["tokens"] == fsdp["tokens"] == 777  # the budget exact across ranks
    assert fsdp["backend"] == "fsdp" and [r["rank"] for r in fsdp["per_rank"]] == [0, 1]
    assert [r["local_fraction"] for r in fsdp["per_rank"]] == [0.5, 0.5]
    assert [r["local_fraction"] for r in ddp["per_rank"]] == [1.0, 1.0]
    held = [(r["param_bytes"], r["grad_bytes"], r["optim_bytes"]) for r in fsdp["per_rank"]]
    full = [(r["param_bytes"], r["grad_bytes"], r["optim_bytes"]) for r in ddp["per_rank"]]
    for mine, whole in zip(held, full):
        assert all(m * 2 == pytest.approx(w, rel=0.02) for m, w in zip(mine, whole)), (mine, whole)
    assert fsdp["loss_curve"] == pytest.approx(ddp["loss_curve"], rel=1e-4)
    assert fsdp["dtensors"] == 0 and fsdp["loss"] == pytest.approx(ddp["loss"], rel=1e-4)  # gathered on rank 0


@pytest.mark.slow
def test_hybrid_shard_replicates_across_groups_and_matches_ddp(tmp_path, tiny_model_dir):
    """fsdp.shard_size 1 on 2 ranks: a hybrid shard of two replicas of a one-rank shard group (FSDP2 on a 2-D mesh).
    Each rank holds everything, as DDP's ranks do, and the check expects exactly that; the curve is DDP's."""
    ddp = _torchrun(tmp_path, tiny_model_dir, "ddp")
    hsdp = _torchrun(tmp_path, tiny_model_dir, "hsdp")
    assert hsdp["backend"] == "fsdp" and hsdp["tokens"] == 777
    assert [r["local_fraction"] for r in hsdp["per_rank"]] == [1.0, 1.0]
    assert [r["param_bytes"] for r in hsdp["per_rank"]] == [r["param_bytes"] for r in ddp["per_rank"]]
    assert hsdp["loss_curve"] == pytest.approx(ddp["loss_curve"], rel=1e-4)
    assert hsdp["dtensors"] == 0 and hsdp["loss"] == pytest.approx(ddp["loss"], rel=1e-4)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_nodes_on_localhost_train_one_fsdp_cell(tmp_path, tiny_model_dir):
    """`cell_command` for `nnodes: 2` started twice on this machine, one rank per "node", each in its own folder
    (as on two machines), the c10d rendezvous on a free local port: one FSDP2 cell sharded over both nodes, its
    result stored by whichever node's process became rank 0."""
    from harness import store
    from harness.config import load_matrix
    from harness.matrix import expand
    from harness.runner import cell_command

    train = ("{batch_size: 2, learning_rate: 0.001, nproc_per_node: 1, distributed: {backend: fsdp, nnodes: 2, "
             f"rdzv_endpoint: '127.0.0.1:{_free_port()}'}}}}")
    cell = expand(load_matrix(_write(tmp_path, tiny_model_dir, train)), tmp_path)[1]
    cmd = cell_command(cell, Path("cell.json"), Path("results"))  # relative: the same command on both nodes
    assert "--nnodes=2" in cmd and "--nproc_per_node=1" in cmd
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    nodes, started = [tmp_path / "node0", tmp_path / "node1"], []
    try:
        for node in nodes:
            (node / "results").mkdir(parents=True)
            (node / "cell.json").write_text(cell.model_dump_json(), encoding="utf-8")
            with (node / "log").open("w") as log:
                started.append(subprocess.Popen(cmd, cwd=node, env=env, stdout=log, stderr=subprocess.STDOUT))
        codes = [p.wait(timeout=300) for p in started]
    finally:
        for p in started:
            if p.poll() is None:
                p.kill()
                p.wait()
    logs = "\n".join(f"--- {n.name}\n" + (n / "log").read_text(errors="replace")[-2000:] for n in nodes)
    assert codes == [0, 0], logs
    results = [r for n in nodes if (r := store.load(n / "results", cell.id)) is not None]
    assert len(results) == 1, logs  # rank 0 stores; the other node's process only trained
    result = results[0]
    assert result["status"] == "ok", result.get("reason")
    usage = result["usage"]
    assert usage["world_size"] == 2 and usage["backend"] == "fsdp" and usage["tokens"] == 400
    assert [r["rank"] for r in usage["per_rank"]] == [0, 1]
    assert [r["local_fraction"] for r in usage["per_rank"]] == pytest.approx([0.5, 0.5], abs=0.01)


def test_a_node_without_rank_0_says_where_the_result_is(tmp_path, tiny_model_dir, monkeypatch):
    """`harness run` on a node whose processes all exited cleanly but none was rank 0 (which stores the result on
    its own node) records why, instead of a crash with exit status 0."""
    from harness import runner
    from harness.config import load_matrix
    from harness.matrix import expand

    train = "{nproc_per_node: 1, distributed: {backend: fsdp, nnodes: 2, rdzv_endpoint: 'node0:29500'}}"
    cell = expand(load_matrix(_write(tmp_path, tiny_model_dir, train)), tmp_path)[1]
    monkeypatch.setattr(runner, "_start_child", lambda *a: subprocess.Popen([sys.executable, "-c", ""]))
    result = runner.run_isolated(cell, tmp_path / "out")
    assert result["status"] == "failed" and result["reason"].startswith("trained here as one of 2 nodes, without "
                                                                        "rank 0: the node whose process became rank 0")
