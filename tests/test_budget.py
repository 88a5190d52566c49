"""Every strategy consumes exactly the matrix's token budget, in the same order."""

from __future__ import annotations

import math

import pytest
from conftest import TINY_WORLD

from harness.config import DataSpec, TrainSpec
from harness.data import budgeted, encode, load_split, reference

DATA = DataSpec(path=str(TINY_WORLD / "data" / "record"))


def _examples(tok, n=40):
    return [encode(tok, r, 256) for r in load_split(DATA, TINY_WORLD, "train")[:n]]


def test_budgeted_holds_exactly_the_budget_in_a_seed_fixed_order(world_tok):
    examples = _examples(world_tok)
    per_pass = sum(len(e["input_ids"]) for e in examples)
    for tokens in (1, 777, per_pass, 3 * per_pass + 5):
        out = budgeted(examples, tokens, seed=0)
        assert sum(len(e["input_ids"]) for e in out) == tokens
        assert all(len(e["input_ids"]) == len(e["labels"]) for e in out)
    assert budgeted(examples, 2000, seed=0) == budgeted(examples, 2000, seed=0)
    assert budgeted(examples, 2000, seed=0) != budgeted(examples, 2000, seed=1)


def test_encode_trains_only_on_the_completion(world_tok):
    row = load_split(DATA, TINY_WORLD, "train")[0]
    ex = encode(world_tok, row, 256)
    target = [t for t in ex["labels"] if t != -100]
    assert world_tok.decode(target) == reference(row) + "<|end|>\n"
    assert ex["input_ids"][-len(target):] == target


@pytest.mark.parametrize("budget", [700, 1234])
def test_training_stops_at_the_same_token_count_for_every_strategy(tiny_model_dir, world_tok, budget):
    import strategies  # noqa: F401
    from harness.config import ModelSpec
    from harness.matrix import resolve_params
    from harness.models import load
    from harness.train import train
    from strategies.base import STRATEGIES

    consumed = {}
    for name, params in (("full", {}), ("lora", {"r": 4})):
        model, tok = load(ModelSpec(id=str(tiny_model_dir)))
        strategy = STRATEGIES.get(name)()
        model = strategy.prepare(model, resolve_params(strategy.Params, params))
        examples = budgeted(_examples(tok), budget, seed=0)
        usage = train(model, tok, examples, TrainSpec(batch_size=4, learning_rate=1e-3), {"tokens": budget}, seed=0)
        consumed[name] = (usage["tokens"], usage["steps"])
    assert consumed["full"] == consumed["lora"]
    assert consumed["full"][0] == budget


def test_a_cut_inside_the_prompt_keeps_a_supervised_token_and_trains_finite_at_batch_size_1(tiny_model_dir,
                                                                                           world_tok):
    """Answer-only loss with a budget whose cut falls inside the last example's prompt: the piece kept ends in its
    answer, so the last step (batch size 1: that piece alone) has a finite loss and the cell is not diverged."""
    import strategies  # noqa: F401
    from harness.config import ModelSpec
    from harness.matrix import resolve_params
    from harness.models import load
    from harness.train import train
    from strategies.base import STRATEGIES

    examples = _examples(world_tok, 6)
    first = budgeted(examples, 10**6, seed=0)[0]  # the order's first example
    prompt = next(i for i, label in enumerate(first["labels"]) if label != -100)
    cut = prompt // 2  # the budget ends inside the first example's prompt
    assert cut > 0
    (piece,) = budgeted(examples, cut, seed=0)
    assert len(piece["input_ids"]) == cut and any(label != -100 for label in piece["labels"])
    assert piece["input_ids"] == first["input_ids"][-cut:]  # its answer's end, not its prompt's start
    whole = budgeted(examples, len(first["input_ids"]) + cut, seed=0)  # a full example, then a cut one
    assert sum(len(e["input_ids"]) for e in whole) == len(first["input_ids"]) + cut
    assert all(any(label != -100 for label in e["labels"]) for e in whole)
    model, tok = load(ModelSpec(id=str(tiny_model_dir)))
    strategy = STRATEGIES.get("lora")()
    model = strategy.prepare(model, resolve_params(strategy.Params, {"r": 4}))
    budget = len(first["input_ids"]) + cut
    usage = train(model, tok, whole, TrainSpec(batch_size=1, learning_rate=1e-3), {"tokens": budget}, seed=0)
    assert usage["stopped_by"] is None and usage["steps"] == 2 and usage["tokens"] == budget
    assert math.isfinite(usage["loss_last"])  # the last step's loss, over the piece alone: not 0/0
