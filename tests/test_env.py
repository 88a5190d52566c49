"""Reproducible installs: constraints.txt pins every dependency pyproject.toml names, within its range, and the
leaderboard header flags results measured under other versions than the pins."""

from __future__ import annotations

import json
import re

import pytest
from conftest import REPO
from fake_results import ENV, save_cell
from packaging.requirements import Requirement

from harness import env
from harness.report.leaderboard import write_leaderboard


def _requirements() -> list[Requirement]:
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text("utf-8"))["project"]
    return [Requirement(r) for r in project["dependencies"] + sum(project["optional-dependencies"].values(), [])]


def test_constraints_pin_every_requirement_within_its_range():
    pins = env.pinned(REPO / "constraints.txt")
    for req in _requirements():
        name = env.canonical(req.name)
        assert name in pins, f"constraints.txt does not pin {req.name} (regenerate: python -m harness.env)"
        assert req.specifier.contains(pins[name], prereleases=True), f"{name}=={pins[name]} is outside {req}"
    assert set(env.canonical(t) for t in env.TRANSITIVE) <= set(pins)


def test_the_readme_and_ci_install_with_the_constraints():
    readme = (REPO / "README.md").read_text("utf-8")
    commands = re.findall(r"```bash\n([^\n]*python3 -m venv [^\n]*)\n```", readme)
    assert len(commands) == 2 and all("pip install -c constraints.txt -e " in c for c in commands)
    ci = (REPO / ".ci" / "run").read_text("utf-8").strip().splitlines()[-1]
    assert ci == commands[1]  # CI runs the README's test command exactly


def test_a_malformed_constraint_names_its_file_and_line(tmp_path):
    (tmp_path / "c.txt").write_text("# pins\ntorch==2.13.0\ntransformers>=5\n")
    with pytest.raises(ValueError, match=r"c.txt:3: expected `name==version`, got 'transformers>=5'"):
        env.pinned(tmp_path / "c.txt")
    assert env.pinned(tmp_path / "missing.txt") == {}


def test_drift_ignores_local_labels_and_names_the_pin():
    pins = {"torch": "2.13.0", "transformers": "5.24.0", "lm-eval": "0.4.13"}
    got = env.drift({"torch": "2.13.0+cpu", "transformers": "5.23.0", "lm_eval": "0.4.13", "peft": "0.21.2"}, pins)
    assert got == ["transformers 5.23.0 (constraints.txt pins 5.24.0)"]


def test_the_leaderboard_header_flags_results_made_under_other_versions(tmp_path):
    pins = env.pinned(REPO / "constraints.txt")
    same = {**ENV, "packages": {"torch": "2.13.0+cpu", "transformers": pins["transformers"]}}
    save_cell(tmp_path / "a", "base", "base", {"task_exact_match": [1.0, 0.0]}, env=same)
    md = write_leaderboard(tmp_path / "a", plot=False).read_text("utf-8")
    assert "Not the pinned versions" not in md
    other = {**ENV, "packages": {"torch": "2.13.0", "transformers": "4.0.0"}}
    save_cell(tmp_path / "b", "base", "base", {"task_exact_match": [1.0, 0.0]}, env=other)
    md = write_leaderboard(tmp_path / "b", plot=False).read_text("utf-8")
    assert f"measured with transformers 4.0.0 (constraints.txt pins {pins['transformers']})" in md
    assert json.loads((tmp_path / "b" / "summary.json").read_text("utf-8"))  # the rest of the report still written
