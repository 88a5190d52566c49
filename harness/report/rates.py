"""The learning rate each cell was trained with, as every report surface shows it.

Where a search ran (harness.tuning), the cell was trained at its chosen trial's rate, not at the
configured centre the stored label and `cell.train.learning_rate` name. Labels are rebuilt here
when a report renders: the stored cell JSON is checksummed and its id does not depend on them.

    trained_rate(result)     # 0.006: the chosen trial's rate, else the configured one
    rate_text([result])      # '0.006 (x3 of 0.002; best loss of 3)'
    label([result])          # 'lora r=4 lr=0.006'  (stored: 'lora r=4 lr=0.002')
"""

from __future__ import annotations

import re

from harness.matrix import BASE
from harness.store import chosen_trial

_LR = re.compile(r"(?<=\blr=)\S+")


def trained_rate(result: dict) -> float | None:
    """The rate the evaluated model was trained with: the chosen trial's where a search ran."""
    if result["cell"]["strategy"] == BASE:
        return None
    trial = chosen_trial(result)
    return trial["learning_rate"] if trial else (result["cell"].get("train") or {}).get("learning_rate")


def bracket(result: dict) -> str | None:
    """How the search ended (harness.tuning.bracket, stored as usage.tuning_bracket): interior, extended or edge."""
    return (result.get("usage") or {}).get("tuning_bracket")


def max_extensions(result: dict) -> int | None:
    return (result["cell"].get("tuning") or {}).get("max_extensions")


def _rates(results: list[dict]) -> list[float]:
    return list(dict.fromkeys(r for r in map(trained_rate, results) if r is not None))


def _g(x: float) -> str:
    return f"{x:g}"


def rate_text(results: list[dict]) -> str:
    """'0.006 (x3 of 0.002; best loss of 3)', '0.0003 (set)', or one rate per seed where seeds chose differently."""
    first = results[0]
    if first["cell"]["strategy"] == BASE:
        return "–"
    trials = first.get("lr_trials") or []
    if not trials:
        return f"{'/'.join(map(_g, _rates(results)))} (set)"
    centre = (first["cell"].get("train") or {}).get("learning_rate")
    objective = trials[0].get("objective", "loss").replace("_", " ")
    chosen = [chosen_trial(r) or {} for r in results]
    mults = list(dict.fromkeys(_g(t["multiplier"]) for t in chosen if t.get("multiplier") is not None))
    how = f"x{'/'.join(mults)} of {_g(centre)}; " if mults and centre else ""
    per_seed = len(_rates(results)) > 1
    ends = list(dict.fromkeys(b for b in map(bracket, results) if b in ("extended", "edge")))
    marks = "".join(f", {b}" + (f" after {max_extensions(first)} extensions" if b == "edge" else "") for b in ends)
    return (f"{'/'.join(map(_g, _rates(results)))} ({how}best {objective} of {len(trials)}"
            + (", per seed" if per_seed else "") + marks + ")")


def label(results: list[dict]) -> str:
    """The stored label without its seed, naming the trained rate(s) where a search chose one."""
    first = results[0]
    text = re.sub(r" seed=-?\d+$", "", first.get("label") or first["cell"]["strategy"])
    if first["cell"]["strategy"] == BASE or not first.get("lr_trials"):
        return text
    shown = "/".join(map(_g, _rates(results)))
    return _LR.sub(shown, text) if _LR.search(text) else f"{text} lr={shown}"
