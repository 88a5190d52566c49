"""Expand a `MatrixSpec` into cells: models x strategies x parameter grid x seeds, plus a base cell per model.

A cell's id is a hash of its canonical resolved config and of the versions of the code and
packages that shape its numbers, so the same experiment has the same id in any matrix and on
any machine (paths are kept as written, not made absolute), and an upgrade re-runs it. A base
cell's id hashes only what decides its evaluation (`evaluation`): the model, the eval config and
the data; never the budget, training, tuning or the strategies.

    cells = expand(load_matrix(Path("matrices/smoke.yaml")), root=Path("suites"))
    [c.label for c in cells]   # ['base', 'full', 'lora r=4', 'lora r=16']
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import typing
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from harness.config import (
    DataSpec,
    EvalSpec,
    MatrixSpec,
    ModelSpec,
    StrategyEntry,
    TrainSpec,
    TuningSpec,
    format_errors,
)
from harness.datasets import canonical
from harness.env import VERSIONED

BASE = "base"  # the untrained base model: every delta is measured against it
FINGERPRINT_PACKAGES = VERSIONED[1:]  # and the harness's own version
# names and places, never the experiment; lr_chosen is lr_from's result, filled in by the runner
NOT_IDENTITY = ("matrix", "root", "label", "lr_chosen")
# What only training reads: a base cell trains nothing, so its id leaves these out and a matrix that changes its
# budget, training or tuning (or its strategies) reuses the base result (resume, and harness.basecache).
TRAINING_ONLY = ("budget", "train", "tuning", "lr_multipliers", "params")
TRAINING_ONLY_DATA = ("packing",)
CARVING_DATA = ("tuning", "samples")  # change the training rows, which data.drop_contaminated scores against
# What only a trained cell's extra points read (harness.points): never in a base cell's id.
POINTS_EVAL = ("checkpoints", "interpolate", "point_suites", "tradeoff")
# Eval keys added after results were stored: at their defaults they are left out of every id, so those results keep
# their ids (and a matrix resumes them) until a matrix sets the key.
ADDED_EVAL = {"checkpoints": None, "interpolate": None, "point_suites": None, "tradeoff": None, "inference": True,
              "bf16": None}
ADDED_CELL = {"lr_from": None}  # the same for cell and tuning keys: one seed's cells of a search keep their ids
ADDED_TUNING = {"seeds": "first"}


def _without_added(ev: dict, added: dict = ADDED_EVAL) -> dict:
    return {k: v for k, v in ev.items() if k not in added or v != added[k]}


def evaluation(cell: dict) -> dict:
    """The part of a cell's resolved config (its model_dump) that decides its evaluation: the training-only keys left
    out. This is a base cell's whole identity: the model, the eval config and the data it evaluates on.
    `dataset:` references are spelled as the committed results spelled them (harness.datasets.canonical)."""
    cell = canonical(cell)
    data = dict(cell.get("data") or {})
    for key in TRAINING_ONLY_DATA + (() if data.get("drop_contaminated") else CARVING_DATA):
        data.pop(key, None)
    out = {**{k: v for k, v in cell.items() if k not in TRAINING_ONLY + NOT_IDENTITY}, "data": data}
    if "eval" in cell:
        out["eval"] = _without_added({k: v for k, v in cell["eval"].items() if k not in POINTS_EVAL})
    return out


def identity(cell: dict) -> dict:
    """What a cell's id hashes (besides the versions): a trained cell's whole config, a base cell's evaluation."""
    out = _without_added({k: v for k, v in canonical(cell).items() if k not in NOT_IDENTITY}, ADDED_CELL)
    if out.get("strategy") == BASE:
        return evaluation(out)
    if isinstance(out.get("tuning"), dict):
        out["tuning"] = _without_added(out["tuning"], ADDED_TUNING)
    return {**out, "eval": _without_added(out["eval"])} if "eval" in out else out


@cache
def fingerprint() -> dict[str, str | None]:
    """Versions that change a cell's numbers: the harness's own and the training/eval stack's."""
    from harness import __version__

    def _v(name):
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    return {"harness": __version__, **{p: _v(p) for p in FINGERPRINT_PACKAGES}}


class Cell(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    matrix: str
    model: ModelSpec
    strategy: str
    params: dict[str, Any]
    data: DataSpec
    budget: dict[str, Any]
    train: TrainSpec
    seed: int
    eval: EvalSpec
    lr_multipliers: list[float] | None = None  # a tuning sweep: trials at learning_rate x each
    tuning: TuningSpec | None = None  # how the sweep's trial is chosen (objective, forgetting ceiling)
    lr_from: str | None = None  # the id of the cell whose search chose this cell's rate (tuning.seeds `first`)
    lr_chosen: float | None = None  # that search's chosen multiplier, filled in by the runner before training
    label: str = ""  # human name, e.g. "lora r=4"; not part of the id
    root: str = "."  # folder that relative paths in the cell are relative to; not part of the id

    @property
    def id(self) -> str:
        payload = {**identity(self.model_dump(mode="json")), "versions": fingerprint()}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


@cache
def _params_model(params_cls: type) -> type[BaseModel]:
    """A pydantic model mirroring a strategy's Params dataclass, rejecting unknown keys (and `r: true`: strict)."""
    hints = typing.get_type_hints(params_cls)
    fields = {}
    for f in dataclasses.fields(params_cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        fields[f.name] = (hints[f.name], default)
    return create_model(f"{params_cls.__name__}Spec", __config__=ConfigDict(extra="forbid", strict=True),
                        **fields)


def resolve_params(params_cls: type, raw: dict[str, Any]):
    """Validated Params instance (raises pydantic.ValidationError)."""
    return params_cls(**_params_model(params_cls).model_validate(raw).model_dump())


def _sweeps(params_cls: type, raw: dict[str, Any]) -> list[dict[str, Any]]:
    """Grid points: a list value sweeps, unless the field itself takes a list (then a list of lists does)."""
    hints = typing.get_type_hints(params_cls) if dataclasses.is_dataclass(params_cls) else {}
    axes = []
    for key, value in raw.items():
        takes_list = "list" in str(hints.get(key, ""))
        sweep = isinstance(value, list) and (not takes_list or all(isinstance(v, list) for v in value))
        axes.append([(key, v) for v in value] if sweep and value else [(key, value)])
    return [dict(point) for point in itertools.product(*axes)]


def check_strategies(entries: list[StrategyEntry], source: str) -> list[str]:
    """Each entry's strategy is registered and every grid point of its params resolves (problems, named by key)."""
    import strategies  # noqa: F401  (registers the built-ins)
    from strategies.base import STRATEGIES

    problems = []
    for i, entry in enumerate(entries):
        try:
            cls = STRATEGIES.get(entry.name)
        except KeyError as e:
            problems.append(f"{source}: strategies[{i}].name: {e.args[0]}")
            continue
        for point in _sweeps(cls.Params, entry.params):
            try:
                resolve_params(cls.Params, point)
            except ValidationError as e:
                problems += [p.replace(f"{source}: ", f"{source}: strategies[{i}].params.", 1)
                             for p in format_errors(source, e)]
            except (TypeError, ValueError) as e:
                problems.append(f"{source}: strategies[{i}].params: {e}")
    return problems


def _show(key: str, value: Any) -> str:
    key = {"learning_rate": "lr", "batch_size": "bs"}.get(key, key)
    return f"{key}={value:g}" if isinstance(value, float) else f"{key}={value}"


def expand(spec: MatrixSpec, root: Path) -> list[Cell]:
    """Every cell of the matrix, base cells first, in a stable order."""
    import strategies  # noqa: F401
    from strategies.base import STRATEGIES

    common = dict(matrix=spec.name, data=spec.data, budget=spec.budget.model_dump(), eval=spec.eval, root=str(root))
    tuning = list(spec.tuning.lr_multipliers) if spec.tuning else None
    searched_once = bool(tuning) and spec.tuning.seeds == "first" and len(spec.seeds) > 1
    cells = []
    for model in spec.models:
        cells.append(Cell(model=model, strategy=BASE, params={}, train=spec.train, seed=spec.seeds[0], label=BASE,
                          **common))
        searches: dict[tuple[int, str], str] = {}  # (entry, grid point) -> the id of its first seed's cell
        for (i, entry), seed in itertools.product(enumerate(spec.strategies), spec.seeds):
            cls = STRATEGIES.get(entry.name)
            # the attributes, not a dump: a nested section (train.distributed) stays a model, not a dict
            train = spec.train.model_copy(update={k: getattr(entry.train, k) for k in entry.train.model_fields_set}
                                          if entry.train else {})
            if train.learning_rate is None:
                train = train.model_copy(update={"learning_rate": cls.defaults.learning_rate})
            for point in _sweeps(cls.Params, entry.params):
                params = dataclasses.asdict(resolve_params(cls.Params, point))
                overrides = entry.train.model_dump(exclude_unset=True) if entry.train else {}
                label = " ".join([entry.name] + [_show(k, v) for k, v in {**point, **overrides}.items()]
                                 + ([f"seed={seed}"] if len(spec.seeds) > 1 else []))
                where = (i, json.dumps(point, sort_keys=True, default=str))
                cell = Cell(model=model, strategy=entry.name, params=params, train=train, seed=seed, label=label,
                            lr_multipliers=tuning, tuning=spec.tuning,
                            lr_from=searches.get(where) if searched_once else None, **common)
                searches.setdefault(where, cell.id)
                cells.append(cell)
    return cells
