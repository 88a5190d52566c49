"""Real data for real users: the catalog says where each dataset comes from, `dataset:` references find it in
$HARNESS_DATA, preflight and `harness data` name what is missing or altered (exit 2), and the committed results
keep their cell ids.

Offline and fast: the shipped real matrices are checked against an empty data folder, and a tiny catalog over a
copy of the tiny world's files stands in for the real mirror (../shared/data, `shared_data` tests, skipped when
absent)."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import REPO, SHARED_DATA, TINY_WORLD

from harness import datasets
from harness.cli import main
from harness.config import load_matrix
from harness.matrix import expand
from harness.paths import resolve_data

REAL = {  # shipped matrix -> the catalogued datasets it reads
    "smollm2-135m": ("dialogsum", "wikitext-2", "mmlu", "advbench", "xstest"),
    "smollm2-135m-tradeoff": ("dialogsum", "wikitext-2"),
    "alpaca-example": ("llamafactory_sft", "mmlu", "ceval", "gsm8k"),
    "swap": ("dialogsum", "wikitext-2", "mmlu", "ceval", "cmmlu", "advbench", "xstest"),
}
shared = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="../shared/data is absent (a user's fresh clone)")


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    assert "Traceback" not in out.err
    return code, out.out, out.err


@pytest.fixture()
def tiny(tmp_path, monkeypatch):
    """A mirror holding copies of the tiny world's eval files, a catalog of them, HARNESS_DATA pointing at it,
    and a matrix reading them through `dataset:` references."""
    mirror = tmp_path / "mirror"
    for sub in ("general", "advbench", "xstest", "mmlu"):
        shutil.copytree(TINY_WORLD / "data" / sub, mirror / sub)
    parts = {"general/test.jsonl": "general", "advbench/harmful_behaviors.csv": "advbench",
             "xstest/xstest_prompts.csv": "xstest", "mmlu/test": "mmlu", "mmlu/dev": "mmlu"}
    catalog = tuple(
        datasets.Dataset(name, f"tiny {name}", f"example/{name}", "0" * 40, "data/", "CC0",
                         tuple(datasets.Part(p, datasets.folder_digest(mirror / p) if (mirror / p).is_dir()
                                             else hashlib.sha256((mirror / p).read_bytes()).hexdigest())
                               for p, n in parts.items() if n == name), hub="example/hub" if name == "mmlu" else "")
        for name in dict.fromkeys(parts.values()))
    monkeypatch.setattr(datasets, "CATALOG", catalog)
    monkeypatch.setenv("HARNESS_DATA", str(mirror))
    matrix = {"name": "t", "models": "tiny-world", "data": {"path": "zoo:tiny-world/record"},
              "budget": {"tokens": 1000}, "strategies": [{"name": "full", "train": {"learning_rate": 3e-4}}],
              "eval": {"suites": ["perplexity", "safety", "benchmarks"], "general_text": "dataset:general/test.jsonl",
                       "safety": "dataset:.",
                       "benchmarks": {"tasks": [{"task": "mmlu", "data": "dataset:mmlu", "formulation": "cloze"}]}}}
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(matrix), encoding="utf-8")
    return mirror, path


def test_a_dataset_reference_reads_the_data_folder_harness_data_else_shared_data_beside_the_checkout(monkeypatch):
    monkeypatch.delenv("HARNESS_DATA", raising=False)
    assert resolve_data("dataset:mmlu", Path("/elsewhere")) == REPO.parent / "shared" / "data" / "mmlu"
    monkeypatch.setenv("HARNESS_DATA", "/data/harness")
    assert resolve_data("dataset:dialogsum/test.jsonl") == Path("/data/harness/dialogsum/test.jsonl")
    assert resolve_data("dataset:.") == resolve_data("dataset:") == Path("/data/harness")
    assert resolve_data("../x.json", Path("/m")) == Path("/m/../x.json")  # other values: as before


def test_catalog_names_every_dataset_with_full_provenance():
    names = [d.name for d in datasets.CATALOG]
    assert len(names) == len(set(names))
    assert {"dialogsum", "wikitext-2", "mmlu", "ceval", "cmmlu", "gsm8k", "advbench", "xstest"} <= set(names)
    for d in datasets.CATALOG:
        assert re.fullmatch(r"[\w.-]+/[\w.-]+", d.repo) and re.fullmatch(r"[0-9a-f]{40}", d.commit), d
        assert d.path and d.licence and d.parts
        for p in d.parts:
            assert p.path.split("/")[0] == d.name and re.fullmatch(r"[0-9a-f]{64}", p.sha256), p


def test_every_dataset_a_shipped_matrix_reads_is_catalogued_and_no_matrix_spells_shared():
    for name, expected in REAL.items():
        path = REPO / "matrices" / f"{name}.yaml"
        assert "shared/data" not in "".join(line.split("#")[0] for line in path.read_text("utf-8").splitlines())
        assert sorted(d.name for d, _ in datasets.matrix_needs(path)) == sorted(expected)


def test_a_folder_digest_is_sha256sum_of_its_csvs_piped_to_sha256sum(tmp_path):
    for name, text in (("b_test.csv", "x,y\n"), ("a_test.csv", "1,2\n"), ("B_test.csv", "3\n")):
        (tmp_path / name).write_text(text)
    (tmp_path / "README.txt").write_text("not a csv")
    lines = "".join(f"{hashlib.sha256((tmp_path / n).read_bytes()).hexdigest()}  {n}\n"
                    for n in ("B_test.csv", "a_test.csv", "b_test.csv"))  # LC_ALL=C order
    assert datasets.folder_digest(tmp_path) == hashlib.sha256(lines.encode()).hexdigest()


def test_dataset_references_keep_the_ids_the_committed_results_were_stored_under(tmp_path):
    """The shipped matrices once spelled ../../shared/data/...: the same cells, spelled either way, have one id,
    and the result set keys agree (a resumed run adds new cells to the committed ones' set)."""
    from harness.report.frame import config_key, set_key

    for name in ("smollm2-135m", "smollm2-135m-tradeoff", "alpaca-example"):
        path = REPO / "matrices" / f"{name}.yaml"
        spec = load_matrix(path)
        old = yaml.safe_load(path.read_text("utf-8").replace("dataset:.", "../../shared/data")
                             .replace("dataset:", "../../shared/data/"))
        legacy = tmp_path / f"{name}.yaml"
        legacy.write_text(yaml.safe_dump(old), encoding="utf-8")
        old_cells = expand(load_matrix(legacy), path.parent)
        new_cells = expand(spec, path.parent)
        assert [c.id for c in new_cells] == [c.id for c in old_cells]
        assert new_cells[0].data.path.startswith("dataset:") and old_cells[0].data.path.startswith("../../shared")
        for new, old_cell in zip(new_cells, old_cells):
            results = [{"cell": c.model_dump(mode="json"), "env": {}} for c in (new, old_cell)]
            assert set_key(results[0]) == set_key(results[1]) and config_key(results[0]) == config_key(results[1])
            assert set_key(results[0], True) == set_key(results[1], True)


@pytest.mark.parametrize("name", sorted(REAL))
def test_a_real_matrix_without_its_data_names_each_dataset_its_source_and_harness_data(name, tmp_path, monkeypatch,
                                                                                       capsys):
    monkeypatch.setenv("HARNESS_DATA", str(tmp_path / "empty"))
    code, _, err = _cli(capsys, "validate", str(REPO / "matrices" / f"{name}.yaml"))
    assert code == 2
    for dataset in REAL[name]:
        d = datasets.find(dataset)
        assert f"dataset {dataset}: missing {d.parts[0].path}" in err, err
        assert f"from {d.source()}, licence {d.licence}" in err
    assert "set HARNESS_DATA to a folder" in err and str(tmp_path / "empty") in err
    assert "no such file" not in err  # said once, by the catalog, not again by the readers


def test_an_altered_file_is_named_as_altered_and_the_mirror_validates(tiny, capsys):
    mirror, path = tiny
    code, out, err = _cli(capsys, "validate", str(path))
    assert code == 0, err
    assert "valid, 2 cells" in out
    (mirror / "mmlu" / "test" / sorted(p.name for p in (mirror / "mmlu" / "test").iterdir())[0]).write_text("x")
    data = bytearray((mirror / "general" / "test.jsonl").read_bytes())
    data[100] ^= 1  # one byte changed
    (mirror / "general" / "test.jsonl").write_bytes(bytes(data))
    (mirror / "xstest" / "xstest_prompts.csv").unlink()
    code, _, err = _cli(capsys, "validate", str(path))
    assert code == 2
    assert "eval.general_text: dataset general: altered general/test.jsonl (sha256 " in err
    assert "eval.benchmarks.tasks[0].data: dataset mmlu: altered mmlu/test (sha256 " in err
    assert "the hub has it as example/hub" in err
    assert "eval.safety: dataset xstest: missing xstest/xstest_prompts.csv" in err
    assert "eval.safety: dataset advbench" not in err  # present and unaltered
    assert err.count("\n" + str(path)) == 3  # every problem at once, each once


def test_harness_data_lists_what_a_matrix_reads_and_exits_2_when_one_is_missing(tiny, capsys):
    mirror, path = tiny
    code, out, _ = _cli(capsys, "data", str(path))
    assert code == 0
    assert f"data folder: {mirror} ($HARNESS_DATA)" in out and f"{path}: 4 dataset(s)" in out
    assert re.search(r"mmlu +ok, 2 verified \(sha256\)", out) and "from example/mmlu@" in out
    assert "licence CC0; hub: example/hub" in out
    (mirror / "advbench" / "harmful_behaviors.csv").unlink()
    code, out, _ = _cli(capsys, "data", str(path))
    assert code == 2
    assert re.search(r"advbench +MISSING advbench/harmful_behaviors.csv", out) and "set HARNESS_DATA" in out


def test_harness_data_on_the_shipped_matrices_without_the_data(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HARNESS_DATA", str(tmp_path))
    code, out, _ = _cli(capsys, "data")
    assert code == 2
    assert "smoke.yaml: no catalogued data (zoo or hub only)" in out
    for name in {n for names in REAL.values() for n in names}:
        d = datasets.find(name)
        assert re.search(rf"\n  {re.escape(name)} +MISSING {re.escape(d.parts[0].path)}", out), out
        assert f"from {d.source()}" in out
    assert "also catalogued, read by none of these matrices" not in out  # the swap reads CMMLU, the last one
    extra = datasets.Dataset("unread", "read by no matrix", "example/unread", "0" * 40, "data/", "CC0",
                             (datasets.Part("unread/x.csv", "0" * 64),))
    monkeypatch.setattr(datasets, "CATALOG", (*datasets.CATALOG, extra))
    out = _cli(capsys, "data")[1]
    assert "also catalogued, read by none of these matrices:\n  unread" in out


@pytest.mark.shared_data
@shared
def test_the_mirror_holds_every_catalogued_file_as_recorded_in_sources_md(monkeypatch):
    monkeypatch.delenv("HARNESS_DATA", raising=False)
    sources = (SHARED_DATA / "SOURCES.md").read_text("utf-8")
    for d in datasets.CATALOG:
        assert d.commit in sources and d.repo in sources, d.name
        for p in d.parts:
            assert datasets.state(p, SHARED_DATA) == "ok", p
            assert p.source or re.search(rf"{p.sha256}  {re.escape(p.path)}\b", sources), p


@pytest.mark.shared_data
@shared
@pytest.mark.parametrize("name", sorted(REAL))
def test_the_real_matrices_validate_with_the_mirror(name, monkeypatch, capsys):
    monkeypatch.delenv("HARNESS_DATA", raising=False)  # ../shared/data beside the checkout
    code, out, err = _cli(capsys, "data", name)
    assert code == 0, out
    monkeypatch.setenv("HARNESS_DATA", str(SHARED_DATA))
    code, out, err = _cli(capsys, "validate", str(REPO / "matrices" / f"{name}.yaml"))
    assert code == 0, err
    assert json.dumps(out)  # the cell list printed
