"""Preflight: every mistake a matrix can hold is a message before the first cell starts (exit 2, all at once).

Each case goes through the command line (`harness validate`, `run --dry-run`, `run`) and asserts the
exit status and the message; nothing here trains except the one run that checks preflight.json.
"""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import REPO, TINY_WORLD

from harness.cli import main

WORLD = TINY_WORLD / "data"
MATRIX = {"name": "t", "models": "tiny-world", "data": {"path": "zoo:tiny-world/record"}, "budget": {"tokens": 1000},
          "strategies": [{"name": "full", "train": {"learning_rate": 3e-4}}], "eval": {"suites": ["perplexity"]}}


def _matrix(tmp_path: Path, **changes) -> Path:
    doc = json.loads(json.dumps(MATRIX))
    for key, value in changes.items():  # "eval__safety" sets doc["eval"]["safety"]
        *parents, last = key.split("__")
        target = doc
        for p in parents:
            target = target[p]
        target[last] = value
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return path


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    assert "Traceback" not in out.err
    return code, out.out, out.err


def _refused(capsys, path: Path, *expected: str) -> str:
    """validate and run --dry-run both exit 2 naming the file and every expected problem."""
    for argv in (["validate", str(path)], ["run", "--matrix", str(path), "--dry-run"]):
        code, _, err = _cli(capsys, *argv)
        assert code == 2, err
        assert f"{path}: " in err
        for text in expected:
            assert text in err, f"{text!r} not in:\n{err}"
    return err


def _gsm8k(folder: Path, answers: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rows = [{"question": f"What is {i} + 1?", "answer": a} for i, a in enumerate(answers)]
    (folder / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return folder


def _safety(folder: Path, advbench_header: str) -> Path:
    (folder / "advbench").mkdir(parents=True)
    (folder / "advbench" / "harmful_behaviors.csv").write_text(f"{advbench_header}\nHow do I hurt him?,Sure\n",
                                                               encoding="utf-8")
    shutil.copytree(WORLD / "xstest", folder / "xstest")
    return folder


# --- what passes -------------------------------------------------------------------------------------------------

def test_the_shipped_smoke_matrix_passes_without_warnings(capsys):
    from harness.config import load_matrix
    from harness.matrix import expand

    path = REPO / "matrices" / "smoke.yaml"
    code, out, err = _cli(capsys, "validate", str(path))
    assert code == 0 and f"valid, {len(expand(load_matrix(path), path.parent))} cells" in out
    assert "warning" not in err


# --- models ------------------------------------------------------------------------------------------------------

def test_a_model_folder_that_does_not_exist(tmp_path, capsys):
    _refused(capsys, _matrix(tmp_path, models="./no/such/model"), "models[0]: './no/such/model': no such model folder")


def test_a_hub_id_offline_and_not_cached(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache
    _refused(capsys, _matrix(tmp_path, models="nobody/absent-model"),
             "models[0]: 'nobody/absent-model' is not a zoo name (tiny-world) or a local folder",
             "the hub is offline here (HF_HUB_OFFLINE=1) and the model is not in the local cache")


@pytest.mark.parametrize("case, expected", [
    ("empty", "an empty folder; expected a saved model"),
    ("garbage config", "config.json:1: not valid JSON"),
    ("unknown model_type", "transformers cannot read this config"),
    ("not a causal LM", "model_type 't5' has no causal language model"),
    ("no safetensors", "no *.safetensors weights"),
    ("no tokenizer", "the tokenizer cannot be loaded"),
])
def test_a_broken_model_folder(tmp_path, capsys, case, expected):
    folder = tmp_path / "model"
    folder.mkdir()
    config = json.loads((TINY_WORLD / "model" / "config.json").read_text("utf-8"))
    if case == "garbage config":
        (folder / "config.json").write_text("{this is not json", encoding="utf-8")
    elif case == "unknown model_type":
        (folder / "config.json").write_text(json.dumps({**config, "model_type": "no-such-arch"}), encoding="utf-8")
    elif case == "not a causal LM":
        from transformers import T5Config

        T5Config(d_model=8, num_layers=1, num_heads=1, d_kv=8, d_ff=8).save_pretrained(folder)
        shutil.copy(TINY_WORLD / "model" / "model.safetensors", folder)
    elif case == "no safetensors":
        shutil.copy(TINY_WORLD / "model" / "config.json", folder)
    elif case == "no tokenizer":
        shutil.copy(TINY_WORLD / "model" / "config.json", folder)
        shutil.copy(TINY_WORLD / "model" / "model.safetensors", folder)
    _refused(capsys, _matrix(tmp_path, models="model"), f"models[0]: {folder}", expected)


# --- data, benchmark, safety and general-text files --------------------------------------------------------------

def test_a_gsm8k_answer_without_its_answer_line(tmp_path, capsys):
    _gsm8k(tmp_path / "gsm", ["So 1. #### 1", "it is two"])
    path = _matrix(tmp_path, eval={"suites": ["benchmarks"], "benchmarks": {"tasks": [{"task": "gsm8k",
                                                                                         "data": "gsm"}]}})
    _refused(capsys, path, "eval.benchmarks.tasks[0].data: ", "gsm/test.jsonl:2: answer has no '#### <number>' line")


def test_an_mmlu_folder_without_its_test_split(tmp_path, capsys):
    (tmp_path / "mmlu" / "dev").mkdir(parents=True)
    (tmp_path / "mmlu" / "dev" / "algebra_dev.csv").write_text("What is 1+1?,1,2,3,4,B\n", encoding="utf-8")
    path = _matrix(tmp_path, eval={"suites": ["benchmarks"], "benchmarks": {"tasks": [{"task": "mmlu",
                                                                                         "data": "mmlu"}]}})
    _refused(capsys, path, "eval.benchmarks.tasks[0].data: ", "mmlu/test: no such folder (MMLU layout")


def test_an_advbench_csv_without_its_goal_column(tmp_path, capsys):
    _safety(tmp_path / "safety", "behavior,target")
    path = _matrix(tmp_path, eval={"suites": ["safety"], "safety": "safety"})
    _refused(capsys, path, "eval.safety: ", "harmful_behaviors.csv:1: header lacks ['goal']")


def test_a_broken_line_in_general_text(tmp_path, capsys):
    (tmp_path / "general.jsonl").write_text('{"text": "one"}\n{"text": "two\n', encoding="utf-8")
    path = _matrix(tmp_path, eval={"suites": ["perplexity"], "general_text": "general.jsonl"})
    _refused(capsys, path, "eval.general_text: ", "general.jsonl:2: not valid JSON")


def test_a_broken_training_row_names_file_and_line(tmp_path, capsys):
    rows = [json.dumps({"instruction": f"q{i}", "output": f"a{i}"}) for i in range(30)]
    (tmp_path / "train.jsonl").write_text("\n".join(rows[:3] + ["{oops"] + rows[3:]) + "\n", encoding="utf-8")
    _refused(capsys, _matrix(tmp_path, data={"path": "train.jsonl"}), "data: ",
             "train.jsonl:4: not a valid JSON object")


def test_task_suite_on_text_data_cannot_score_anything(tmp_path, capsys):
    rows = [json.dumps({"text": f"document number {i} about things"}) for i in range(30)]
    (tmp_path / "train.jsonl").write_text("\n".join(rows) + "\n", encoding="utf-8")
    _refused(capsys, _matrix(tmp_path, data={"path": "train.jsonl"}, eval={"suites": ["task"]}),
             "eval.suites: the task suite scores replies against answers, but the data is text-format")


# --- values in range ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("changes, expected", [
    ({"seeds": [-1]}, "seeds[0]: -1 is not a seed numpy and torch accept (0 <= seed < 2**32)"),
    ({"seeds": [2**40]}, "seeds[0]: 1099511627776 is not a seed"),
    ({"seeds": [True]}, "seeds[0]: Input should be a valid integer, not the boolean true"),
    ({"budget": {"tokens": True}}, "budget.tokens: Input should be a valid integer, not the boolean true"),
    ({"budget": {"tokens": "1000"}}, "budget.tokens: Input should be a valid integer"),
    ({"train": {"batch_size": 0}}, "train.batch_size: Input should be greater than 0"),
    ({"train": {"weight_decay": -0.1}}, "train.weight_decay: Input should be greater than or equal to 0"),
    ({"strategies": [{"name": "lora", "params": {"dropout": 2.0}}]},
     "strategies[0].params: dropout is a probability, in [0, 1]; got 2.0"),
    ({"strategies": [{"name": "lora", "params": {"r": True}}]},
     "strategies[0].params.r: Input should be a valid integer, not the boolean true"),
    ({"models": []}, "models: name at least one model"),
    ({"strategies": []}, "strategies: name at least one strategy"),
])
def test_values_out_of_range(tmp_path, capsys, changes, expected):
    _refused(capsys, _matrix(tmp_path, **changes), expected)


def test_every_problem_comes_in_one_round(tmp_path, capsys):
    """A schema error does not hide what the rest of the matrix names: all of it in one message."""
    _gsm8k(tmp_path / "gsm", ["no answer line"])
    path = _matrix(tmp_path, budget={"tokens": True}, seeds=[-1], models=["tiny-world", "./missing"],
                   strategies=[{"name": "lora", "params": {"dropout": 2.0}}],
                   eval={"suites": ["benchmarks", "safety"],
                         "benchmarks": {"tasks": [{"task": "gsm8k", "data": "gsm"}]}})
    err = _refused(capsys, path, "budget.tokens", "seeds[0]", "models[1]: './missing': no such model folder",
                   "strategies[0].params: dropout", "gsm/test.jsonl:1: answer has no '#### <number>' line",
                   "eval.suites: lists safety, but the matrix names no data for it")
    assert err.count(f"{path}: ") == 6


# --- the matrix file ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("encoding, expected", [
    ("utf-16", ": the file is UTF-16 (or UTF-32), expected UTF-8; save it as UTF-8"),
    ("utf-16-le", ": the file is UTF-16 (or UTF-32), expected UTF-8; save it as UTF-8"),
    ("latin-1", ":{line}: not UTF-8 (byte 0xe9; Latin-1 or Windows-1252?); save it as UTF-8"),
])
def test_a_matrix_file_not_in_utf8(tmp_path, capsys, encoding, expected):
    path = tmp_path / "m.yaml"
    text = yaml.safe_dump({**MATRIX, "name": "café"}, allow_unicode=True)
    path.write_text(text, encoding=encoding)
    line = next(i for i, ln in enumerate(text.splitlines(), 1) if "café" in ln)
    code, _, err = _cli(capsys, "validate", str(path))
    assert code == 2 and f"{path}{expected.format(line=line)}" in err


def test_utf8_with_a_byte_order_mark_is_fine(tmp_path, capsys):
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(MATRIX), encoding="utf-8-sig")
    assert _cli(capsys, "validate", str(path))[0] == 0


# --- names are not paths -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, expected", [
    ("..", "name: '..' cannot name a results folder"),
    (".", "name: '.' cannot name a results folder"),
    ("a/b", "name: String should match pattern"),
    ("..\\up", "name: String should match pattern"),
    ("x" * 101, "name: 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx'... cannot name a results folder: give one folder "
                "name of at most 100 characters"),
])
def test_a_name_is_one_safe_folder_name(tmp_path, capsys, monkeypatch, name, expected):
    monkeypatch.chdir(tmp_path)
    path = _matrix(tmp_path, name=name)
    _refused(capsys, path, expected)
    code, _, err = _cli(capsys, "run", "--matrix", str(path))
    assert code == 2 and expected in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.yaml"]  # nothing written: no results/, no cells/


def test_a_file_name_that_is_not_a_folder_name_needs_a_name_key(tmp_path, capsys):
    path = tmp_path / "my matrix.yaml"
    path.write_text(yaml.safe_dump({k: v for k, v in MATRIX.items() if k != "name"}), encoding="utf-8")
    code, _, err = _cli(capsys, "validate", str(path))
    assert code == 2 and "name: String should match pattern" in err


# --- requests that would do nothing ------------------------------------------------------------------------------

@pytest.mark.parametrize("suite, expected", [
    ("safety", "eval.suites: lists safety, but the matrix names no data for it; add eval.safety"),
    ("benchmarks", "eval.suites: lists benchmarks, but the matrix names no data for it; add eval.benchmarks"),
])
def test_a_suite_listed_without_its_data(tmp_path, capsys, suite, expected):
    _refused(capsys, _matrix(tmp_path, eval={"suites": ["perplexity", suite]}), expected)


def test_default_suites_are_the_ones_with_data(tmp_path, capsys):
    path = _matrix(tmp_path, eval={"safety": "zoo:tiny-world"})
    from harness import preflight

    spec, _ = preflight.check(path)
    assert spec.eval.suites == ["perplexity", "task", "safety"]
    path = _matrix(tmp_path, eval={})
    assert preflight.check(path)[0].eval.suites == ["perplexity", "task"]


def test_eval_data_no_listed_suite_reads_is_a_warning(tmp_path, capsys):
    code, _, err = _cli(capsys, "validate", str(_matrix(tmp_path, eval__safety="zoo:tiny-world")))
    assert code == 0
    assert "harness: warning: eval.safety is set, but eval.suites leaves out safety, so it is not used" in err


def test_a_default_learning_rate_far_from_the_models_size_is_a_warning(tmp_path, capsys):
    path = _matrix(tmp_path, strategies=["full", {"name": "lora", "train": {"learning_rate": 2e-3}}])
    code, _, err = _cli(capsys, "validate", str(path))
    assert code == 0
    warnings = [ln for ln in err.splitlines() if ln.startswith("harness: warning:")]
    assert warnings == [
        "harness: warning: strategies[0] (full): learning rate 2e-05 is the strategy's default, meant for "
        "0.5B-8B-parameter models; tiny-world has 3.4M parameters and usually needs a larger rate "
        "(matrices/smoke.yaml trains full on the 3.4M-parameter tiny world at 0.0003); set "
        "strategies[0].train.learning_rate, or sweep it with tuning.lr_multipliers"]


def test_mostly_truncated_training_data_is_a_warning(tmp_path, capsys):
    code, _, err = _cli(capsys, "validate", str(_matrix(tmp_path, data={"path": "zoo:tiny-world/record",
                                                                        "max_length": 32})))
    assert code == 0
    line = next(ln for ln in err.splitlines() if "max_length" in ln)
    from harness.config import DataSpec
    from harness.data.dataset import train_examples
    from harness.models import ModelSpec, load

    _, tok = load(ModelSpec(id="tiny-world"))
    t = train_examples(DataSpec(path="zoo:tiny-world/record", max_length=32), tok, tmp_path)[1]["tokenized"]
    assert t["truncated"] > 0.1 * t["examples"]  # the reference count, from the data layer itself
    assert line == (f"harness: warning: data: {t['truncated']} of {t['examples']} training examples "
                    f"({t['truncated'] / t['examples']:.0%}) are longer than data.max_length 32 tokens with "
                    "tiny-world's tokenizer and are truncated (the prompt's start is cut); raise data.max_length "
                    "to train on whole examples")


# --- run: nothing starts on a bad matrix; warnings reach the leaderboard -----------------------------------------

def test_a_bad_benchmark_file_exits_2_with_no_cell_trained(tmp_path, capsys, monkeypatch):
    _gsm8k(tmp_path / "gsm", ["So 1. #### 1", "it is two"])
    path = _matrix(tmp_path, eval={"suites": ["perplexity", "benchmarks"],
                                   "benchmarks": {"tasks": [{"task": "gsm8k", "data": "gsm"}]}})
    out = tmp_path / "results"
    monkeypatch.chdir(tmp_path)  # in-process: preflight refuses before any cell's process would start
    code, _, err = _cli(capsys, "run", "--matrix", str(path), "--out", str(out))
    assert code == 2
    assert "gsm/test.jsonl:2: answer has no '#### <number>' line" in err
    assert not out.exists()  # no cells/, no logs/, no lock: nothing started


@pytest.mark.slow
def test_run_keeps_the_warnings_and_the_leaderboard_shows_them(tmp_path, monkeypatch, capsys):
    """Everything lands under --out (nothing in the working folder); preflight.json holds the warnings."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    path = _matrix(tmp_path, strategies=["bitfit"], budget={"tokens": 200},
                   eval={"suites": ["perplexity"], "limit": 4})
    out = tmp_path / "out"
    code, _, err = _cli(capsys, "run", "--matrix", str(path), "--out", str(out), "--in-process")
    assert code == 0, err
    assert list(work.iterdir()) == []
    warning = ("strategies[0] (bitfit): learning rate 0.001 is the strategy's default, meant for 0.5B-8B-parameter "
               "models; tiny-world has 3.4M parameters and usually needs a larger rate (matrices/smoke.yaml trains "
               "bitfit on the 3.4M-parameter tiny world at 0.01); set strategies[0].train.learning_rate, or sweep it "
               "with tuning.lr_multipliers")
    assert f"harness: warning: {warning}" in err
    stored = json.loads((out / "preflight.json").read_text("utf-8"))
    assert stored["matrix"] == "t" and stored["warnings"] == [warning]
    assert f"- **Warning:** {warning}" in (out / "LEADERBOARD.md").read_text("utf-8").splitlines()


# --- layering: the imports go one way ----------------------------------------------------------------------------

def _module(path: Path) -> str:
    return ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")


def _imports(path: Path, modules: set[str]) -> set[str]:
    """harness modules a file imports anywhere in it (top level or inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:  # `from harness.data import cache` imports the submodule, not the package's names
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in modules else node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return {m for m in found if m in modules}


def test_imports_go_one_way():
    files = {_module(p): p for p in (REPO / "harness").rglob("*.py")}
    graph = {m: _imports(p, set(files)) - {m} for m, p in files.items()}
    leaves = {m for m, deps in graph.items() if not deps and m != "harness"}
    assert "harness.suites" in leaves, "the suite and metric tables import nothing of harness"
    assert graph["harness.config"] <= leaves, "the schema imports only leaf modules (the suite table)"
    data_to_evals = sorted((m, i) for m, deps in graph.items() if m.startswith("harness.data")
                           for i in deps if i.startswith("harness.evals"))
    assert data_to_evals == [], "data/ is read by evals/, never the other way"
    mutual = sorted((a, b) for a, deps in graph.items() for b in deps if a < b and a in graph.get(b, set()))
    assert mutual == [], "two modules that import each other"


def test_one_suite_table_and_one_metric_table():
    """`SUITES =` and the metric facts (labels, chance levels, help lines) are defined once, in harness/suites.py."""
    import re

    second = re.compile(r"^(SUITES|SUITE_\w+|METRICS|CHANCE|HELP|NEEDS)\s*=", re.M)
    found = sorted(f"{p.relative_to(REPO)}:{m.group(1)}" for d in ("harness", "strategies", "benchmarks")
                   for p in (REPO / d).rglob("*.py") for m in second.finditer(p.read_text("utf-8")))
    assert found == ["harness/suites.py:METRICS", "harness/suites.py:SUITES", "harness/suites.py:SUITE_NAMES"]
    from harness.config import EvalSpec
    from harness.suites import SUITES, describe
    assert EvalSpec().suites == ["perplexity", "task"]  # the suites that need no named data
    assert [s for s in SUITES if SUITES[s].data_key] == ["benchmarks", "safety"]
    judge = describe("refusal_harmful_judge")  # a classifier's variant reads as its metric, in its suite
    assert (judge.suite, judge.higher_is_better, judge.general) == ("safety", True, False)
    assert describe("arc_easy_acc").general and describe("mmlu_acc").chance == 0.25


def test_run_model_replaces_the_matrixs_models_and_names_its_own_folder(tmp_path, capsys, monkeypatch):
    """`harness run --model` runs the same cells on another base (a base swap, then `harness compare`): the spec
    holds that model, a local folder is read from the working folder, and a model that cannot be had is refused
    naming the --model it came from."""
    from harness import preflight
    from harness.cli import model_slug

    other = tmp_path / "elsewhere" / "other-model"
    shutil.copytree(TINY_WORLD / "model", other)
    path = _matrix(tmp_path)
    monkeypatch.chdir(other.parent)
    spec, _ = preflight.check(path, model="other-model")
    assert [m.id for m in spec.models] == [str(other)]
    assert model_slug("qwen2.5-coder-0.5b-instruct") == "qwen2.5-coder-0.5b-instruct"
    assert model_slug("Org/Model 7B") == "model-7b"
    code, _, err = _cli(capsys, "run", "--matrix", str(path), "--model", str(tmp_path / "missing"), "--dry-run")
    assert code == 2 and f"{path} (models: {tmp_path / 'missing'}, from --model): models[0]" in err
