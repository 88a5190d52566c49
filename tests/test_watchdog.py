"""budget.max_seconds bounds every phase of a cell, and a cell whose perplexity explodes is `diverged`, not ok."""

from __future__ import annotations

import math
import os
import textwrap

import pytest
from conftest import REPO, TINY_WORLD

from harness import store
from harness.cli import main
from harness.runner import EXPLODE_FACTOR, explosion, phase_limit

HANGING = '''
import time
from dataclasses import dataclass

from strategies.base import TrainDefaults


@dataclass(frozen=True)
class HangParams:
    pass


class Hang:
    """A strategy whose prepare never returns."""

    Params = HangParams
    defaults = TrainDefaults(learning_rate=1e-3)

    def check(self, model, params):
        return None

    def prepare(self, model, params):
        time.sleep(3600)

    def save(self, model, path):
        raise NotImplementedError

    def load(self, model, path):
        raise NotImplementedError
'''


def _plugin(tmp_path, monkeypatch):
    """The strategy installed as an entry point, visible to the cell's child process too."""
    site = tmp_path / "site"
    (site / "hang-0.1.dist-info").mkdir(parents=True)
    (site / "hang_strategy.py").write_text(HANGING)
    (site / "hang-0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: hang\nVersion: 0.1\n")
    (site / "hang-0.1.dist-info" / "entry_points.txt").write_text("[harness.strategies]\nhang = hang_strategy:Hang\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), str(REPO)]))


@pytest.mark.slow
def test_a_strategy_that_hangs_in_prepare_ends_over_budget_with_the_phase_named(tmp_path, monkeypatch, tiny_model_dir):
    _plugin(tmp_path, monkeypatch)
    matrix = tmp_path / "m.yaml"
    matrix.write_text(textwrap.dedent(f"""
        name: hang
        models: {tiny_model_dir}
        data: {{path: {TINY_WORLD / 'data' / 'record'}}}
        budget: {{tokens: 400, max_seconds: 4}}
        strategies: [hang]
        eval: {{suites: [perplexity], limit: 4}}
    """))
    out = tmp_path / "out"
    assert main(["run", "--matrix", str(matrix), "--out", str(out)]) == 0  # over_budget is a measurement
    hang = next(r for r in store.load_all(out) if r["label"] == "hang")
    assert hang["status"] == "over_budget", hang["reason"]
    assert hang["reason"].startswith("watchdog: the prepare phase ran ") and "budget.max_seconds 4s" in hang["reason"]
    limit = 4 * 1.5 + 10
    assert f"(limit {limit:.0f}s with grace)" in hang["reason"]
    assert limit <= hang["wall_seconds"] < 300  # the start-up and load phases, then the prepare limit, not for ever


def test_phase_limits_follow_max_seconds_and_the_lr_trials():
    from harness.config import MatrixSpec
    from harness.matrix import expand

    spec = MatrixSpec.model_validate({"name": "t", "models": [str(TINY_WORLD / "model")],
                                      "data": {"path": "zoo:tiny-world/record"},
                                      "budget": {"tokens": 100, "max_seconds": 20},
                                      "tuning": {"lr_multipliers": [0.5, 1, 2]}, "strategies": ["full"]})
    base, full = expand(spec, REPO)
    assert phase_limit(base, "evaluate") == phase_limit(full, "prepare") == 20 * 1.5 + 10
    assert phase_limit(full, "train") == (3 + 2) * 20 * 1.5 + 10  # each trial, 2 extensions too, may use the cap
    assert phase_limit(full, "start") == 300  # imports are not the cell's work
    free = spec.model_copy(update={"budget": spec.budget.model_copy(update={"max_seconds": None})})
    assert phase_limit(expand(free, REPO)[1], "prepare") is None


def _m(value):
    return {"value": value, "ci_low": value, "ci_high": value, "n": 4}


def test_explosion_is_a_perplexity_beyond_the_factor_or_not_finite():
    base = {"ppl_general": _m(1.6), "ppl_in_domain": _m(5290.0), "task_exact_match": _m(0.5)}
    assert EXPLODE_FACTOR == 10
    assert explosion({"ppl_general": _m(15.9), "ppl_in_domain": _m(9000.0), "task_exact_match": _m(0.0)}, base) is None
    why = explosion({"ppl_general": _m(3.6e7), "ppl_in_domain": _m(4000.0)}, base)
    assert why == ("ppl_general 3.6e+07 is 2.25e+07x the base model's 1.6 (more than 10x the base): "
                   "training blew the model up")
    assert explosion({"ppl_general": _m(math.inf)}, base).startswith("ppl_general is inf (base 1.6)")
    assert explosion({"ppl_general": _m(None)}, base).startswith("ppl_general is None (base 1.6)")
    assert explosion({"ppl_general": _m(17.0)}, {"ppl_general": _m(math.nan)}) is None  # no usable reference


@pytest.mark.slow
def test_bitfit_at_lr_1e8_is_diverged_with_the_metric_named_and_bitfit_at_its_default_is_ok(tmp_path):
    matrix = tmp_path / "m.yaml"
    matrix.write_text(textwrap.dedent("""
        name: explode
        models: tiny-world
        data: {path: zoo:tiny-world/record}
        budget: {tokens: 400}
        train: {batch_size: 4}
        strategies: [bitfit, {name: bitfit, train: {learning_rate: 1.0e+8}}]
        eval: {suites: [perplexity], limit: 8, general_text: zoo:tiny-world/general/test.jsonl}
    """))
    out = tmp_path / "out"
    assert main(["run", "--matrix", str(matrix), "--out", str(out), "--in-process"]) == 0
    by = {r["label"]: r for r in store.load_all(out)}
    assert by["bitfit"]["status"] == "ok" and by["base"]["status"] == "ok"
    blown = by["bitfit lr=1e+08"]
    assert blown["status"] == "diverged" and blown["reason"].endswith("training blew the model up")
    base_ppl = by["base"]["metrics"]["ppl_general"]["value"]
    assert blown["metrics"]["ppl_general"]["value"] > EXPLODE_FACTOR * base_ppl
    assert f"the base model's {base_ppl:.4g}" in blown["reason"]
    assert store.damage(out, blown["id"]) is None  # re-saved with its items and a fresh checksum
    assert "diverged" in (out / "LEADERBOARD.md").read_text()
