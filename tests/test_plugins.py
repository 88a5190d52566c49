"""A strategy from another package plugs in through the `harness.strategies` entry-point group.

Its class follows the bare contract (no StrategyBase, no `check`, `load_kwargs` or `interpolated`): registration
gives it those defaults. Its entry-point name is not a built-in's, or the built-in would be run instead."""

from __future__ import annotations

import textwrap

from conftest import TINY_WORLD

from harness import store
from harness.cli import main

IA3_MODULE = '''
from dataclasses import dataclass

from strategies.base import TrainDefaults, peft_load, peft_save


@dataclass(frozen=True)
class IA3Params:
    pass


class IA3:
    """IA3 from peft, installed from outside the repository."""

    Params = IA3Params
    defaults = TrainDefaults(learning_rate=1e-2)

    def prepare(self, model, params):
        from peft import IA3Config, get_peft_model

        return get_peft_model(model, IA3Config(task_type="CAUSAL_LM", target_modules=["k_proj", "v_proj", "down_proj"],
                                               feedforward_modules=["down_proj"]))

    save = staticmethod(peft_save)
    load = staticmethod(peft_load)
'''


def test_out_of_tree_strategy_runs_in_a_matrix(tmp_path, monkeypatch, tiny_model_dir):
    site = tmp_path / "site"
    (site / "my_ia3-0.1.dist-info").mkdir(parents=True)
    (site / "my_ia3.py").write_text(IA3_MODULE)
    (site / "my_ia3-0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: my-ia3\nVersion: 0.1\n")
    (site / "my_ia3-0.1.dist-info" / "entry_points.txt").write_text("[harness.strategies]\nmy_ia3 = my_ia3:IA3\n")
    monkeypatch.syspath_prepend(str(site))

    matrix = tmp_path / "m.yaml"
    matrix.write_text(textwrap.dedent(f"""
        name: plugin
        models: {tiny_model_dir}
        data: {{path: {TINY_WORLD / 'data' / 'record'}}}
        budget: {{tokens: 400}}
        strategies: [my_ia3]
        eval: {{suites: [perplexity], limit: 4}}
    """))
    assert main(["strategies"]) == 0
    out = tmp_path / "results"
    assert main(["run", "--matrix", str(matrix), "--out", str(out), "--in-process"]) == 0
    from strategies.base import STRATEGIES, StrategyBase

    plugin = STRATEGIES.get("my_ia3")
    assert plugin.__module__ == "my_ia3" and not issubclass(plugin, StrategyBase)
    assert plugin().load_kwargs(None) == {} and plugin().check(None, None) is None and plugin.not_interpolable is None
    ia3 = next(r for r in store.load_all(out) if r["label"] == "my_ia3")
    assert ia3["status"] == "ok" and 0 < ia3["trainable_params"] < 2000 and ia3["usage"]["tokens"] == 400
