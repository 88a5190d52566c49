"""The benchmarks suite: lm-eval's own tasks on the in-memory model equal lm-eval's CLI, on local native files."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO, SHARED_DATA, TINY_WORLD

from harness import preflight
from harness.config import ConfigError, load_matrix
from harness.data.native import FormatError, read_ceval, read_cmmlu, read_gsm8k, read_mmlu
from harness.evals import benchmarks
from harness.evals.lmeval_tasks import lm_eval_tasks_dir, write_local_task
from harness.matrix import expand

real = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="../shared/data is absent (a user's fresh clone)")
DATA = TINY_WORLD / "data"


@pytest.fixture(autouse=True)
def task_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "lm-eval-tasks"


def cell_for(tmp_path, model: str, bench: dict):
    doc = {"name": "t", "models": model, "data": {"path": "zoo:tiny-world/record"}, "budget": {"tokens": 1000},
           "strategies": ["full"], "eval": {"suites": ["benchmarks"], "benchmarks": bench}}
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return expand(preflight.check(path)[0], tmp_path)[0]


TASKS = [{"task": "mmlu", "data": "zoo:tiny-world/mmlu", "formulation": "cloze", "limit": 4},
         {"task": "ceval-valid", "data": "zoo:tiny-world/ceval", "limit": 4},
         {"task": "gsm8k", "data": "zoo:tiny-world/gsm8k", "limit": 3, "gen_kwargs": {"max_gen_toks": 16}}]


@pytest.mark.slow
def test_harness_equals_lm_eval_cli_exactly(tmp_path, tiny_model, tiny_model_dir, task_cache):
    """`lm_eval --model hf` on the saved model, same task configs and limit, gives the very same per-item scores."""
    from harness.evals.evaluate import run_suites

    model, tok = tiny_model
    cell = cell_for(tmp_path, str(tiny_model_dir), {"batch_size": 8, "tasks": TASKS})
    metrics, items = run_suites(model, tok, cell, progress=lambda _: None)

    out = tmp_path / "cli"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "lm_eval", "--model", "hf", "--device", "cpu", "--batch_size", "8",
           "--model_args", f"pretrained={tiny_model_dir},dtype=float32",
           "--tasks", "harness_mmlu_cloze,harness_ceval,harness_gsm8k", "--include_path", str(task_cache),
           "--limit", "4", "--gen_kwargs", "max_gen_toks=16", "--log_samples", "--output_path", str(out)]
    # gsm8k runs 3 items here and 4 in the CLI: compare its first 3
    subprocess.run(cmd, check=True, env=env, capture_output=True, text=True, timeout=300)
    cli = json.loads(next(out.rglob("results_*.json")).read_text("utf-8"))["results"]
    assert metrics["mmlu_cloze_acc"]["value"] == cli["harness_mmlu_cloze"]["acc,none"]
    assert metrics["mmlu_cloze_acc_norm"]["value"] == cli["harness_mmlu_cloze"]["acc_norm,none"]
    assert metrics["ceval_acc"]["value"] == cli["harness_ceval"]["acc,none"]
    assert metrics["mmlu_cloze_acc"]["n"] == 3 * 4 and metrics["ceval_acc"]["n"] == 3 * 4
    for task, prefix in (("harness_mmlu_cloze", "mmlu_cloze"), ("harness_ceval", "ceval"), ("harness_gsm8k", "gsm8k")):
        cli_items = _cli_items(out, task)
        for key, values in cli_items.items():
            assert items[f"{prefix}_{key}"] == values[: len(items[f"{prefix}_{key}"])], (task, key)
    assert len(items["gsm8k_exact_match_strict_match"]) == 3
    for task in ("harness_mmlu_cloze", "harness_ceval"):
        assert_loglikelihoods_equal_cli(model, tok, out, task, batch_size=8)


def assert_loglikelihoods_equal_cli(model, tok, out: Path, task: str, batch_size: int) -> None:
    """The harness's lm-eval LM (FastHFLM, as the suite runs it) on the CLI's requests: within 1e-4, same greedy."""
    from lm_eval.api.instance import Instance

    cli = []
    for path in sorted(out.rglob(f"samples_{task}*.jsonl")):
        for s in map(json.loads, path.read_text("utf-8").splitlines()):
            if s["filter"] == "none":
                cli += [((a["arg_0"], a["arg_1"]), float(r[0][0]), str(r[0][1]) == "True")
                        for a, r in zip(s["arguments"].values(), s["resps"], strict=True)]
    requests = [Instance("loglikelihood", {}, args, i) for i, (args, _, _) in enumerate(cli)]
    mine = benchmarks.wrap(model, tok, batch_size, None).loglikelihood(requests, disable_tqdm=True)
    assert cli and len(mine) == len(cli)
    for (args, ll, greedy), (my_ll, my_greedy) in zip(cli, mine, strict=True):
        assert my_ll == pytest.approx(ll, abs=1e-4) and my_greedy == greedy, args


def _cli_items(out: Path, task: str) -> dict[str, list[float]]:
    """Per-item scores from the CLI's samples files, in the harness's order (subtask name, doc id)."""
    rows = []
    for path in sorted(out.rglob(f"samples_{task}*.jsonl")):
        rows += [(path.name.split("_20")[0], json.loads(line)) for line in path.read_text("utf-8").splitlines()]
    found: dict[str, list[float]] = {}
    for _, s in sorted(rows, key=lambda r: (r[0], r[1]["filter"], r[1]["doc_id"])):
        for m in s["metrics"]:
            found.setdefault(benchmarks.metric_name("", m, s["filter"])[1:], []).append(float(s[m]))
    return found


@pytest.mark.slow
def test_suite_scores_the_shipped_world_with_cis_and_a_batch_invariance_check(tmp_path):
    """The tiny world's model knows its facts: cloze MMLU/C-Eval well above chance, letter form near it."""
    from harness import models
    from harness.evals.evaluate import run_suites

    tasks = [{"task": "mmlu", "data": "zoo:tiny-world/mmlu", "formulation": f, "limit": 10}
             for f in ("cloze", "letter")]
    tasks.append({"task": "ceval-valid", "data": "zoo:tiny-world/ceval", "formulation": "cloze", "limit": 10})
    cell = cell_for(tmp_path, "tiny-world", {"batch_size": 16, "tasks": tasks})
    model, tok = models.load(cell.model)
    metrics, items = run_suites(model, tok, cell, progress=lambda _: None)
    assert metrics["mmlu_cloze_acc"]["value"] >= 0.9 and metrics["ceval_cloze_acc"]["value"] >= 0.6
    assert metrics["mmlu_acc"]["value"] < 0.6  # letters: a 3.4M model cannot map options to letters
    for name in ("mmlu_cloze_acc", "mmlu_acc", "ceval_cloze_acc"):
        m = metrics[name]
        assert m["n"] == 30 and len(items[name]) == 30 and m["ci_low"] <= m["value"] <= m["ci_high"]
        subjects = items["_groups"][name]  # one lm-eval task per subject: questions cluster by subject
        assert len(set(subjects)) == 3 and all(subjects.count(s) == 10 for s in subjects)
        assert m["ci_method"] == "wilson-clustered" and m["groups"] == 3
        assert len(set(items["_ids"][name])) == 30
    assert items["_ids"]["mmlu_cloze_acc"] == items["_ids"]["mmlu_cloze_acc_norm"]  # the same docs
    sanity = items["_sanity_batch_invariance"]
    assert set(sanity) == {"mmlu_cloze", "mmlu", "ceval_cloze"}
    for check in sanity.values():
        assert check["requests"] == 8 * 4 and check["same_choices"] and check["max_abs_diff_bs1_bs8"] < 1e-4


def smoke_entries(limit: int) -> list[dict]:
    """The smoke matrix's benchmark entries, each cut to `limit` docs per subtask (GSM8K to 8 new tokens)."""
    smoke = yaml.safe_load((REPO / "matrices" / "smoke.yaml").read_text("utf-8"))["eval"]["benchmarks"]["tasks"]
    return [{**t, "limit": limit, **({"gen_kwargs": {"max_gen_toks": 8}} if "gen_kwargs" in t else {})}
            for t in smoke]


@pytest.mark.slow
def test_one_evaluator_call_equals_one_simple_evaluate_per_entry_with_no_pip(tmp_path, monkeypatch):
    """The smoke's entries and the letter forms of its MMLU and C-Eval, five in one evaluator call (FastHFLM), give
    the per-item scores, ids and groups of the old way (one simple_evaluate per entry, stock HFLM), and spawn no
    process (simple_evaluate runs `pip list`)."""
    from lm_eval import evaluator, simple_evaluate

    from harness import models

    entries = smoke_entries(3)
    entries += [{**t, "formulation": "letter"} for t in entries if t.get("formulation") == "cloze"]
    cell = cell_for(tmp_path, "tiny-world", {"batch_size": 8, "sanity_docs": 2, "tasks": entries})
    model, tok = models.load(cell.model)
    spawned: list = []
    popen = subprocess.Popen.__init__
    monkeypatch.setattr(subprocess.Popen, "__init__", lambda self, args, *a, **kw: spawned.append(args)
                        or popen(self, args, *a, **kw))
    calls: list = []
    evaluate = evaluator.evaluate
    monkeypatch.setattr(evaluator, "evaluate", lambda **kw: calls.append(sorted(kw["task_dict"]["tasks"]))
                        or evaluate(**kw))
    new = benchmarks.run(model, tok, cell)
    assert spawned == []
    assert len(calls) == 1 and len(calls[0]) == 4 * 3 + 1  # MMLU and C-Eval in both forms (3 subjects), GSM8K

    old: dict = {"_ids": {}, "_groups": {}}
    for entry, task, folder in benchmarks.prepare(cell.eval.benchmarks, tmp_path):
        from lm_eval.tasks import TaskManager

        results = simple_evaluate(model=benchmarks.wrap(model, tok, 8, None, fast=False), tasks=[task],
                                  num_fewshot=entry.num_fewshot, limit=entry.limit,
                                  task_manager=TaskManager(include_path=str(folder), include_defaults=False),
                                  gen_kwargs=entry.gen_kwargs, log_samples=True, bootstrap_iters=0,
                                  cache_requests=False)
        scores = benchmarks.per_item(results, entry.name)
        for key in ("_ids", "_groups"):
            old[key].update(scores.pop(key))
        old.update(scores)
    assert any("pip" in str(args) for args in spawned)  # the spy sees the environment dump it guards against
    assert len(old["gsm8k_exact_match_strict_match"]) == 3 and len(old["mmlu_cloze_acc"]) == 9
    assert {k: v for k, v in new.items() if k not in ("_timing", "_sanity_batch_invariance")} == old
    assert set(new["_timing"]) == {"loglikelihood", "generate_until", "other", "sanity"}
    for check in new["_sanity_batch_invariance"].values():  # FastHFLM's run against stock HFLM at batch 1
        assert check["max_abs_diff_bs1_run"] < 1e-4 and check["same_choices"]


def test_entries_share_one_call_unless_their_task_names_clash():
    def entry(*tasks, groups=()):
        return {"tasks": dict.fromkeys(tasks), "groups": dict.fromkeys(groups), "group_map": {}}

    assert benchmarks.share_calls([entry("a1", "a2", groups=["a"]), entry("b"), entry("c")]) == [[0, 1, 2]]
    # the same hub task twice (say 0- and 5-shot): each copy needs its own call
    assert benchmarks.share_calls([entry("gsm8k"), entry("mmlu_x", groups=["mmlu"]), entry("gsm8k"),
                                   entry("x", groups=["mmlu"])]) == [[0, 1], [2, 3]]


def test_peft_model_is_scored_as_trained_not_as_its_base(tiny_model):
    """HFLM gets the PeftModel object itself: it scores as the merged model does, not as the base."""
    import copy

    from lm_eval.api.instance import Instance
    from peft import LoraConfig, get_peft_model

    model, tok = tiny_model
    request = [Instance("loglikelihood", {}, ("Question: Where does Ada Keller live?\nAnswer:", " Neli"), 0)]
    base = benchmarks.wrap(model, tok, 1, None).loglikelihood(request)[0][0]
    peft = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    tuned = benchmarks.wrap(peft, tok, 1, None).loglikelihood(request)[0][0]
    merged = benchmarks.wrap(copy.deepcopy(peft).merge_and_unload(), tok, 1, None).loglikelihood(request)[0][0]
    assert abs(tuned - base) > 1e-3
    assert tuned == pytest.approx(merged, abs=1e-4)


def test_local_configs_include_lm_evals_own_yaml_and_override_only_the_data(task_cache):
    folder, name = write_local_task("mmlu", "letter", DATA / "mmlu", "mmlu")
    assert name == "harness_mmlu" and folder.parent == task_cache
    cfg = yaml.safe_load((folder / "harness_mmlu_world_people.yaml").read_text("utf-8"))
    assert cfg["include"] == str(lm_eval_tasks_dir() / "mmlu" / "default" / "_default_template_yaml")
    assert set(cfg) == {"include", "task", "task_alias", "tag", "dataset_path", "dataset_name", "dataset_kwargs",
                        "description"}  # no prompt, split or metric key: those stay lm-eval's
    assert cfg["description"] == "The following are multiple choice questions (with answers) about world people.\n\n"
    rows = [json.loads(x) for x in Path(cfg["dataset_kwargs"]["data_files"]["test"]).read_text("utf-8").splitlines()]
    items = [it for it in read_mmlu(DATA / "mmlu", "test") if it.subject == "world_people"]
    assert [(r["question"], tuple(r["choices"]), r["answer"]) for r in rows] == [
        (it.question, it.choices, it.answer) for it in items]
    assert write_local_task("mmlu", "letter", DATA / "mmlu", "mmlu")[0] == folder  # same data: same folder


def test_contaminated_items_left_out_of_benchmark_scoring_when_asked(task_cache):
    from harness.data.dataset import item_text
    from harness.data.hygiene import item_key

    def scored(folder, config):
        files = yaml.safe_load((folder / config).read_text("utf-8"))["dataset_kwargs"]["data_files"]
        return [json.loads(x) for x in Path(files["test"]).read_text("utf-8").splitlines()]

    mmlu = [it for it in read_mmlu(DATA / "mmlu", "test") if it.subject == "world_people"]
    whole, _ = write_local_task("mmlu", "cloze", DATA / "mmlu", "mmlu_cloze")
    cut, _ = write_local_task("mmlu", "cloze", DATA / "mmlu", "mmlu_cloze", frozenset({item_key(item_text(mmlu[3]))}))
    assert cut != whole  # the left-out set is part of the folder's key
    kept = [r["question"] for r in scored(cut, "harness_mmlu_cloze_world_people.yaml")]
    assert len(kept) == len(mmlu) - 1 and mmlu[3].question not in kept

    gsm = read_gsm8k(DATA / "gsm8k" / "test.jsonl")
    cut, _ = write_local_task("gsm8k", None, DATA / "gsm8k", "gsm8k", frozenset({item_key(item_text(gsm[0]))}))
    assert [r["question"] for r in scored(cut, "harness_gsm8k.yaml")] == [it.prompt for it in gsm[1:]]


def test_native_layout_errors_name_the_file_and_line(tmp_path):
    (tmp_path / "test").mkdir()
    (tmp_path / "test" / "algebra_test.csv").write_text("What is 1+1?,1,2,3,4,B\nWhat is 2+2?,2,3,4,5,E\n")
    with pytest.raises(FormatError, match=r"algebra_test.csv:2: .*answer in A-D"):
        write_local_task("mmlu", None, tmp_path, "mmlu")
    with pytest.raises(FormatError, match=r"val: no such folder"):
        write_local_task("ceval-valid", None, tmp_path, "ceval")
    with pytest.raises(FormatError, match=r"ceval/test: no such folder \(CMMLU layout: test/<subject>.csv"):
        write_local_task("cmmlu", None, DATA / "ceval", "cmmlu")
    with pytest.raises(FormatError, match=r"mmlu/test/world_geography_test.csv:1: header lacks \['A', .*\] "
                                          r"\(CMMLU layout expected: a header naming Question,A,B,C,D,Answer\)"):
        write_local_task("cmmlu", "cloze", DATA / "mmlu", "cmmlu_cloze")


@pytest.mark.parametrize("bench, message", [
    ({"tasks": [{"task": "gsm8k", "formulation": "cloze"}]}, "formulation applies to"),
    ({"tasks": [{"task": "arc_easy", "data": "x"}]}, "local files are read for"),
    ({"tasks": [{"task": "ceval-valid", "formulation": "cloze"}]}, "no cloze ceval-valid on the hub"),
    ({"tasks": [{"task": "cmmlu", "formulation": "cloze"}]}, "no cloze cmmlu on the hub"),
    ({"tasks": [{"task": "cmmlu", "data": "zoo:tiny-world/ceval", "formulation": "cloze"}]},
     r"tasks\[0\]\.data: .*ceval/test: no such folder \(CMMLU layout: test/<subject>.csv, dev/<subject>.csv"),
    ({"tasks": [{"task": "mmlu"}, {"task": "mmlu", "formulation": "letter"}]}, "same name"),
    ({"tasks": [{"task": "mmlu", "limit": 0}]}, "greater than 0"),
    ({"tasks": [{"task": "mmlu", "data": "no/such/folder"}]}, r"tasks\[0\]\.data: no such file or folder"),
])
def test_bad_benchmark_config_names_the_key(tmp_path, bench, message):
    with pytest.raises(ConfigError, match=message) as err:
        cell_for(tmp_path, "tiny-world", bench)
    assert "eval.benchmarks.tasks" in str(err.value)


def test_unknown_hub_task_is_a_config_error_before_any_training(tmp_path):
    with pytest.raises(ConfigError, match=r"tasks\[1\]\.task: lm-eval has no task or group 'mmlu_contination' "
                                          r"\(did you mean mmlu_continuation"):
        cell_for(tmp_path, "tiny-world", {"tasks": [{"task": "gsm8k"}, {"task": "mmlu_contination"}]})


def test_default_names_and_hub_tasks(tmp_path):
    cell = cell_for(tmp_path, "tiny-world", {"tasks": [
        {"task": "mmlu"}, {"task": "mmlu", "formulation": "cloze"}, {"task": "ceval-valid"}, {"task": "gsm8k"},
        {"task": "arc_easy"}]})
    names = [t.name for t in cell.eval.benchmarks.tasks]
    assert names == ["mmlu", "mmlu_cloze", "ceval", "gsm8k", "arc_easy"]
    plan = benchmarks.prepare(cell.eval.benchmarks, tmp_path)
    assert [(task, folder) for _, task, folder in plan] == [
        ("mmlu", None), ("mmlu_continuation", None), ("ceval-valid", None), ("gsm8k", None), ("arc_easy", None)]


def cmmlu_folder(root: Path, per_subject: int = 4) -> Path:
    """A tiny CMMLU in its own layout (`,Question,A,B,C,D,Answer`, an unnamed index first) holding the tiny world's
    Chinese facts: `agronomy`, a subject lm-eval ships a YAML for, and `world_tastes`, one it does not."""
    for split, zh_split in (("test", "val"), ("dev", "dev")):
        by_subject = {"agronomy": "world_people", "world_tastes": "world_tastes"}
        for subject, world in by_subject.items():
            items = [it for it in read_ceval(DATA / "ceval", zh_split) if it.subject == world][:per_subject]
            (root / split).mkdir(parents=True, exist_ok=True)
            with (root / split / f"{subject}.csv").open("w", encoding="utf-8", newline="") as f:
                csv.writer(f).writerows([["", "Question", "A", "B", "C", "D", "Answer"]] + [
                    [i, it.question, *it.choices, "ABCD"[it.answer]] for i, it in enumerate(items)])
    return root


def _requests(folder: Path, specs: list, num_fewshot: int) -> dict[str, list[tuple]]:
    """(context, continuation) of every request lm-eval builds for each task, `num_fewshot` examples from dev."""
    from lm_eval.tasks import TaskManager

    out = {}
    for name, task in TaskManager(include_path=str(folder), include_defaults=False).load(specs)["tasks"].items():
        task.set_config(key="num_fewshot", value=num_fewshot)
        task.build_all_requests(rank=0, world_size=1)
        out[name] = [i.args for i in task.instances]
    return out


def test_cmmlu_letter_form_is_lm_evals_own_task_and_cloze_scores_the_option_text(tmp_path):
    from lm_eval.tasks._yaml_loader import load_yaml

    data = cmmlu_folder(tmp_path / "cmmlu", per_subject=2)
    folder, name = write_local_task("cmmlu", "letter", data, "cmmlu")
    assert name == "harness_cmmlu" and len(list(folder.glob("*.yaml"))) == 2 + 1
    ours = yaml.safe_load((folder / "harness_cmmlu_agronomy.yaml").read_text("utf-8"))
    assert ours["include"] == str(lm_eval_tasks_dir() / "cmmlu" / "cmmlu_agronomy.yaml") and "description" not in ours
    data_keys = {k: ours[k] for k in ("dataset_path", "dataset_name", "dataset_kwargs")}
    own = {**load_yaml(lm_eval_tasks_dir() / "cmmlu" / "cmmlu_agronomy.yaml", resolve_func=True), **data_keys}
    both = _requests(folder, [own, "harness_cmmlu_agronomy"], num_fewshot=1)  # lm-eval's task on the same files
    assert both["harness_cmmlu_agronomy"] == both["cmmlu_agronomy"] and len(both["cmmlu_agronomy"]) == 2 * 4
    context, option = both["cmmlu_agronomy"][0]
    first, shot = read_cmmlu(data, "test")[0], read_cmmlu(data, "dev")[0]
    def options(it):
        return "".join(f"\n{letter}. {c}" for letter, c in zip("ABCD", it.choices, strict=True))

    header = "以下是关于农学的单项选择题，请直接给出正确答案的选项。\n\n"  # lm-eval's, with the subject in Chinese
    assert context == (f"{header}{shot.question}{options(shot)}\n答案： {'ABCD'[shot.answer]}\n\n"
                       f"{first.question}{options(first)}\n答案：") and option == " A"
    unshipped = yaml.safe_load((folder / "harness_cmmlu_world_tastes.yaml").read_text("utf-8"))
    assert unshipped["include"] == str(lm_eval_tasks_dir() / "cmmlu" / "_default_template_yaml")
    assert unshipped["description"] == "以下是关于world tastes的单项选择题，请直接给出正确答案的选项。\n\n"

    folder, name = write_local_task("cmmlu", "cloze", data, "cmmlu_cloze")
    cloze = _requests(folder, ["harness_cmmlu_cloze_agronomy"], num_fewshot=0)["harness_cmmlu_cloze_agronomy"]
    assert cloze[:4] == [(f"{header}{first.question}\n答案：", f" {c}") for c in first.choices]


@pytest.mark.slow
def test_cmmlu_both_forms_score_on_the_tiny_world_item_by_item(tmp_path):
    """lm-eval's CMMLU and its cloze form on a tiny CMMLU folder: per-item results with ids and subjects, the
    contamination check and the report's item texts reading the same items."""
    from harness import models
    from harness.data.prepare import contaminated
    from harness.evals.evaluate import run_suites
    from harness.report import evidence
    from harness.suites import METRICS

    data = cmmlu_folder(tmp_path / "cmmlu", per_subject=8)
    cell = cell_for(tmp_path, "tiny-world", {"batch_size": 16, "tasks": [
        {"task": "cmmlu", "data": str(data), "limit": 6},
        {"task": "cmmlu", "data": str(data), "formulation": "cloze", "limit": 6}]})
    model, tok = models.load(cell.model)
    metrics, items = run_suites(model, tok, cell, progress=lambda _: None)
    names = ["cmmlu_acc", "cmmlu_acc_norm", "cmmlu_cloze_acc", "cmmlu_cloze_acc_norm"]
    assert set(names) <= set(METRICS) and {n for n in metrics if n.startswith("cmmlu")} == set(names)
    for name in names:
        assert metrics[name]["n"] == 12 and len(items[name]) == 12 and set(items[name]) <= {0.0, 1.0}
        subjects = items["_groups"][name]  # one lm-eval task per subject
        assert len(set(subjects)) == 2 and all(subjects.count(s) == 6 for s in subjects)
        assert len(set(items["_ids"][name])) == 12
    assert metrics["cmmlu_cloze_acc"]["value"] >= 0.6  # the world's facts, each option's text scored
    assert contaminated(cell)["cmmlu"]["items"] == 16  # every scored item (test/) is checked, not the limit
    texts, missing = evidence.item_texts({"cell": cell.model_dump()}, ["cmmlu_cloze_acc"])
    assert not missing and [len(t) for t in texts.values()] == [12]


def test_real_suite_yaml_validates_offline():
    spec = load_matrix(REPO / "matrices" / "qwen2.5-0.5b.yaml")
    assert spec.models[0].id == "Qwen/Qwen2.5-0.5B"
    assert [t.task for t in spec.eval.benchmarks.tasks] == ["mmlu", "gsm8k", "ceval-valid"]
    assert all(t.data is None for t in spec.eval.benchmarks.tasks)


def _docs(folder: Path, task: str) -> list[dict]:
    from lm_eval.tasks import TaskManager

    tm = TaskManager(include_path=str(folder), include_defaults=False)
    return list(tm.load([task])["tasks"][task].eval_docs)


@pytest.mark.shared_data
@real
def test_real_mmlu_ceval_gsm8k_files_through_the_same_configs(tmp_path, tiny_model):
    """The real files: lm-eval reads exactly our loaders' items, with lm-eval's own subject descriptions."""
    mmlu_folder, _ = write_local_task("mmlu", "letter", SHARED_DATA / "mmlu", "mmlu")
    ours = [it for it in read_mmlu(SHARED_DATA / "mmlu", "test") if it.subject == "college_physics"]
    docs = _docs(mmlu_folder, "harness_mmlu_college_physics")
    assert [(d["question"], tuple(d["choices"]), d["answer"]) for d in docs] == [
        (it.question, it.choices, it.answer) for it in ours]
    cfg = yaml.safe_load((mmlu_folder / "harness_mmlu_college_physics.yaml").read_text("utf-8"))
    assert cfg["include"].endswith("mmlu/default/mmlu_college_physics.yaml") and "description" not in cfg
    assert len(list(mmlu_folder.glob("harness_mmlu*.yaml"))) == 57 + 1

    ceval_folder, _ = write_local_task("ceval-valid", "letter", SHARED_DATA / "ceval", "ceval")
    ours = [it for it in read_ceval(SHARED_DATA / "ceval", "val") if it.subject == "computer_network"]
    docs = _docs(ceval_folder, "harness_ceval_computer_network")
    assert [(d["question"], (d["A"], d["B"], d["C"], d["D"]), d["answer"]) for d in docs] == [
        (it.question, it.choices, "ABCD"[it.answer]) for it in ours]

    model, tok = tiny_model
    cell = cell_for(tmp_path, "tiny-world", {"batch_size": 8, "tasks": [
        {"task": "mmlu", "data": str(SHARED_DATA / "mmlu"), "limit": 1},
        {"task": "ceval-valid", "data": str(SHARED_DATA / "ceval"), "limit": 1},
        {"task": "gsm8k", "data": str(SHARED_DATA / "gsm8k"), "limit": 2, "num_fewshot": 1,
         "gen_kwargs": {"max_gen_toks": 4}}]})
    scores = benchmarks.run(model, tok, cell)
    assert len(scores["mmlu_acc"]) == 57 and len(scores["ceval_acc"]) == 52
    assert len(scores["gsm8k_exact_match_strict_match"]) == 2
    gsm = yaml.safe_load(next(Path(os.environ["HARNESS_CACHE"]).rglob("harness_gsm8k.yaml")).read_text("utf-8"))
    gsm8k = (SHARED_DATA / "gsm8k").resolve()  # read in place: it already is openai/gsm8k's layout
    assert gsm["dataset_kwargs"]["data_files"] == {"test": str(gsm8k / "test.jsonl"),
                                                   "train": str(gsm8k / "train.jsonl")}
    assert gsm["include"].endswith("gsm8k/gsm8k.yaml")


@pytest.mark.shared_data
@real
def test_real_cmmlu_through_a_dataset_reference_in_both_forms(tmp_path):
    """`dataset:cmmlu` passes preflight (catalogued sha256, every file read); lm-eval reads exactly our loader's
    items with its own subject descriptions, and both forms score one item per subject."""
    from harness import models

    cell = cell_for(tmp_path, "tiny-world", {"batch_size": 16, "tasks": [
        {"task": "cmmlu", "data": "dataset:cmmlu", "limit": 1},
        {"task": "cmmlu", "data": "dataset:cmmlu", "formulation": "cloze", "limit": 1}]})
    folder, _ = write_local_task("cmmlu", "cloze", SHARED_DATA / "cmmlu", "cmmlu_cloze")
    ours = [it for it in read_cmmlu(SHARED_DATA / "cmmlu", "test") if it.subject == "chinese_history"]
    docs = _docs(folder, "harness_cmmlu_cloze_chinese_history")
    assert [(d["Question"], (d["A"], d["B"], d["C"], d["D"]), d["Answer"]) for d in docs] == [
        (it.question, it.choices, "ABCD"[it.answer]) for it in ours]
    assert len(list(folder.glob("harness_cmmlu_cloze*.yaml"))) == 67 + 1 and not any(
        "description" in yaml.safe_load(p.read_text("utf-8")) for p in folder.glob("harness_cmmlu_cloze_*.yaml"))

    scores = benchmarks.run(*models.load(cell.model), cell)
    assert {len(scores[m]) for m in ("cmmlu_acc", "cmmlu_acc_norm", "cmmlu_cloze_acc", "cmmlu_cloze_acc_norm")} == {67}


def test_templates_compile_once_and_render_as_lm_eval_renders_them():
    """The compile cache changes no rendered text and is gone after the call (lm-eval's own function back)."""
    from lm_eval import utils

    from harness.evals.benchmarks import compiled_templates

    doc = {"question": "2+2?", "choices": ["3", "4"], "answer": 1}
    templates = ["{{question.strip()}}\nAnswer:", "{{choices[answer]}}", "{{question | regex_replace('\\\\?', '!')}}"]
    original = utils.apply_template
    expected = [original(t, doc) for t in templates]
    with compiled_templates():
        assert utils.apply_template is not original
        assert [utils.apply_template(t, doc) for t in templates * 2] == expected * 2
    assert utils.apply_template is original
