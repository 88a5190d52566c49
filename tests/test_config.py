"""A malformed matrix gets one paragraph naming the file and the key, exit status 2, no traceback."""

from __future__ import annotations

import textwrap

import pytest
from conftest import REPO

from harness.cli import main
from harness.config import ConfigError, load_matrix

GOOD = """
name: t
models: tiny-world
data: {path: zoo:tiny-world/record}
budget: {tokens: 1000}
strategies: [full, {name: lora, params: {r: [4, 8]}}]
"""

BROKEN = {  # schema problems: load_matrix itself refuses them
    "unknown top-level key": (GOOD + "epochs: 3\n", "epochs: unknown key"),
    "wrong type": (GOOD.replace("tokens: 1000", "tokens: lots"), "budget.tokens"),
    "negative budget": (GOOD.replace("tokens: 1000", "tokens: -5"), "budget.tokens"),
    "missing key": (GOOD.replace("budget: {tokens: 1000}\n", ""), "budget: Field required"),
    "not yaml": ("name: [unclosed\n", "not valid YAML"),
    "not a mapping": ("- just\n- a list\n", "expected a mapping"),
}
CROSS = {  # what the keys name: harness/preflight.py refuses them (validate, run --dry-run, run)
    "missing data folder": (GOOD.replace("zoo:tiny-world/record", "no/such/folder"), "data: "),
    "unknown strategy": (GOOD.replace("[full,", "[fulll,"),
                         "strategies[0].name: unknown strategy 'fulll'; did you mean 'full'"),
    "unknown strategy param": (GOOD.replace("{r: [4, 8]}", "{rank: 4}"), "strategies[1].params.rank: unknown key"),
    "bad strategy param type": (GOOD.replace("{r: [4, 8]}", "{r: four}"), "strategies[1].params.r"),
}


def _write(tmp_path, text):
    path = tmp_path / "matrix.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_smoke_matrix_is_valid():
    spec = load_matrix(REPO / "matrices" / "smoke.yaml")
    assert spec.name == "smoke" and spec.budget.tokens > 0


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_matrix_names_file_and_key(tmp_path, capsys, case):
    text, expected = BROKEN[case]
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_matrix(path)
    assert str(path) in str(err.value) and expected in str(err.value)
    assert main(["validate", str(path)]) == 2
    out = capsys.readouterr()
    assert expected in out.err and "Traceback" not in out.err


@pytest.mark.parametrize("case", sorted(CROSS))
def test_what_the_keys_name_is_checked_by_preflight(tmp_path, capsys, case):
    from harness import preflight

    text, expected = CROSS[case]
    path = _write(tmp_path, text)
    load_matrix(path)  # the schema holds
    with pytest.raises(ConfigError) as err:
        preflight.check(path)
    assert str(path) in str(err.value) and expected in str(err.value)
    assert main(["validate", str(path)]) == 2
    out = capsys.readouterr()
    assert expected in out.err and "Traceback" not in out.err


def test_missing_matrix_file_exits_2(tmp_path, capsys):
    assert main(["run", "--matrix", str(tmp_path / "nope.yaml")]) == 2
    assert "nope.yaml: no such matrix file" in capsys.readouterr().err


def test_every_problem_is_reported_at_once(tmp_path):
    path = _write(tmp_path, GOOD.replace("tokens: 1000", "tokens: lots") + "epochs: 3\n")
    with pytest.raises(ConfigError) as err:
        load_matrix(path)
    assert "budget.tokens" in str(err.value) and "epochs" in str(err.value)


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "matrices").glob("*.yaml")))
def test_every_shipped_matrix_validates(name):
    """A schema change must update the shipped matrices too (preflight, where what they name is here)."""
    path = REPO / "matrices" / name
    spec = load_matrix(path)
    assert spec.strategies


def test_the_old_suites_folder_is_still_read_with_a_notice(monkeypatch, capsys):
    """matrices/ was suites/: an old path still works for a while, and says where the matrix lives now."""
    monkeypatch.chdir(REPO)
    assert main(["validate", "suites/smoke.yaml"]) == 0
    captured = capsys.readouterr()
    assert "harness: notice: suites/smoke.yaml: the suites/ folder is now matrices/; reading matrices/smoke.yaml" \
        in captured.err
    assert "valid, 31 cells" in captured.out
