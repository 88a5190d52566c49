"""Fair tuning: train a cell at a few learning rates on the same budget and keep the one the objective picks.

Each trial starts from a freshly loaded, freshly prepared model under the cell's seed, sees
the same examples in the same order, and is scored by the mean NLL of the completion tokens
of the data's **tuning** split: carved from train by content hash, apart from the validation
split that ppl_in_domain reports and the test split the task metrics report, so the selection
never sees a reported number. The objective (`tuning.objective`) is `loss` (lowest tuning loss)
or `loss_within_forgetting` (lowest tuning loss among trials whose perplexity on
`tuning.general_text` stays within the ceiling over the base model's; none within it: the trial
that forgets least). The chosen trial's trained part is saved with the strategy's own `save`
and loaded back when a later trial was not chosen, so the chosen model is the one evaluated.
Where the chosen trial sits at an end of the grid, the grid is extended one step further that way (the ratio
of its two outermost multipliers) and that trial trained under the same rules, until the best is interior,
or `tuning.max_extensions` extra trials were run: the cell is then marked `edge`. So cells whose optimum lies
outside their grid no longer stop at different distances from it; the price is that `tuning_tokens` differ
between strategies by the extra trials each needed.
With several seeds the search runs on the first (`tuning.seeds: first`, the default) and each other seed
trains once at the rate it chose (cell.lr_from; the runner fills in cell.lr_chosen), so the spread over seeds is
training noise at one rate; `each` searches on every seed.

    model, usage, trials = fit(cell, strategy, params, model, tok, examples, reload_base, memory)
    choose(trials, cell.tuning.objective, ceiling)   # the index of the chosen trial (chosen=True in trials)
"""

from __future__ import annotations

import gc
import math
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from harness.budget import MemoryMonitor
from harness.timing import Clock
from harness.train import train


def tuning_loss(model, tok, cell) -> float:
    """Mean NLL per completion token over the tuning split."""
    from harness.data import load_split, scored_pair
    from harness.evals.perplexity import completion_nll

    rows = load_split(cell.data, Path(cell.root), "tuning")
    pairs = [scored_pair(tok, r, cell.data.template, cell.data.max_length) for r in rows]  # as ppl_in_domain scores
    model.eval()
    nll, counts = completion_nll(model, tok, pairs, cell.eval.batch_size)
    return sum(nll) / max(1, sum(counts))


def general_ppl(model, tok, cell) -> float:
    """Perplexity of tuning.general_text (the forgetting objective's corpus), windows as eval.ppl_window."""
    from harness.data.native import read_documents
    from harness.evals.perplexity import text_nll, window
    from harness.paths import resolve_data

    docs = read_documents(resolve_data(cell.tuning.general_text, Path(cell.root)))
    size, stride = window(model, cell.eval)
    model.eval()
    nll, counts = text_nll(model, tok, docs, max_length=size, stride=stride, batch_size=cell.eval.batch_size)
    mean = sum(nll) / max(1, sum(counts))
    return math.exp(mean) if mean < 700 else math.inf  # a blown-up trial (an extension past the edge): no overflow


def choose(trials: list[dict], objective: str = "loss", ceiling: float | None = None) -> int | None:
    """Index of the trial the objective picks (None: every trial diverged).

    `loss`: the lowest finite tuning_loss. `loss_within_forgetting`: the lowest tuning_loss among trials
    whose general_ppl is at most `ceiling`; when none is, the lowest general_ppl.
    """
    ok = [i for i, t in enumerate(trials) if t["tuning_loss"] is not None]
    if objective == "loss_within_forgetting":
        within = [i for i in ok if t_ppl(trials[i]) <= ceiling]
        if not within:
            return min(ok, key=lambda i: t_ppl(trials[i]), default=None)
        ok = within
    return min(ok, key=lambda i: trials[i]["tuning_loss"], default=None)


def next_multiplier(trials: list[dict], best: int | None) -> float | None:
    """The multiplier one step past the grid's edge where the best trial sits at that edge, else None.

    The step is the ratio between the two outermost multipliers on that side (x3/x1 = 3 upward). A best trial
    that is interior needs no extension; a new trial that diverges or scores worse makes the best interior."""
    grid = sorted({t["multiplier"] for t in trials})
    if best is None or len(grid) < 2:
        return None
    at = trials[best]["multiplier"]
    if at == grid[-1]:
        return at * grid[-1] / grid[-2]
    if at == grid[0]:
        return at * grid[0] / grid[1]
    return None


def bracket(trials: list[dict], limit: int) -> str | None:
    """`interior` (the grid bracketed the chosen rate), `extended` (it did after extending the grid) or `edge`
    (the chosen rate is still at an end of the grid: `limit` extensions were not enough); None for one trial."""
    chosen = next((i for i, t in enumerate(trials) if t.get("chosen")), None)
    if chosen is None or len({t["multiplier"] for t in trials}) < 2 or trials[chosen]["tuning_loss"] is None:
        return None
    if next_multiplier(trials, chosen) is not None:
        return "edge"
    return "extended" if any(t.get("extension") for t in trials) else "interior"


def t_ppl(trial: dict) -> float:
    ppl = trial.get("general_ppl")
    return ppl if ppl is not None and math.isfinite(ppl) else math.inf


def fit(cell, strategy, params, model, tok, examples: list[dict], reload_base: Callable, memory: MemoryMonitor,
        progress_file: Path | None = None, clock: Clock | None = None, snapshot_dir: Path | None = None,
        **train_kwargs) -> tuple[object, dict, list[dict] | None]:
    """Train once, or once per LR multiplier of the cell; returns (model to evaluate, its usage, the trials).

    `clock` gets a train record per trial (its fresh model, training and tuning score), and one each for
    the base model's forgetting ceiling and for reloading the chosen trial. With `snapshot_dir`, each run
    writes its checkpoints (cell.eval.checkpoints) under it; usage["snapshots"] are the chosen run's."""
    clock = clock or Clock()
    at = [f for f in cell.eval.checkpoints or [] if f < 1] if snapshot_dir else None
    sharded = cell.train.backend == "fsdp" and cell.train.world > 1
    if sharded and (cell.lr_multipliers or at):
        raise ValueError("train.distributed fsdp: the LR search and eval.checkpoints are not supported yet")
    if not cell.lr_multipliers:
        with clock.phase("train", "final"):
            usage = train(model, tok, examples, cell.train, cell.budget, cell.seed, memory=memory,
                          progress_file=progress_file, snapshot_at=at, snapshot_dir=snapshot_dir,
                          root=Path(cell.root), **train_kwargs)
        memory.stop()
        if sharded:  # rank 0 evaluates a plain model holding the trained weights, as a one-process cell would
            from harness.distributed import full_model

            with clock.phase("train", "gather"):
                model = full_model(model, lambda: strategy.prepare(reload_base(), params))
        return model, usage, None
    from transformers import set_seed

    objective = cell.tuning.objective if cell.tuning else "loss"
    forgetting = objective == "loss_within_forgetting"
    base_ppl = ceiling = None
    if forgetting:  # the untrained base's general perplexity sets the ceiling
        with clock.phase("train", "base ceiling"):
            base = reload_base()
            base_ppl = general_ppl(base, tok, cell)
            ceiling = base_ppl * (1 + cell.tuning.max_general_ppl_increase)
            del base
    if cell.lr_from and cell.lr_chosen is None:
        raise ValueError(f"cell {cell.id} trains at the rate the search of cell {cell.lr_from} chose; the runner "
                         "fills that rate in (harness.runner.resolve_rate)")
    grid = [cell.lr_chosen] if cell.lr_from else cell.lr_multipliers  # a later seed: one trial at that rate
    keep = Path(tempfile.mkdtemp(prefix="harness-trials-"))
    trials, usages, kept = [], [], None
    limit = cell.tuning.max_extensions if cell.tuning and not cell.lr_from else 0

    def run_trial(mult: float) -> None:
        nonlocal model, memory, kept
        i = len(trials)
        lr = cell.train.learning_rate * mult
        trial = f"lr={lr:.3g} ({i + 1}/{len(grid)}{'+' if i >= len(grid) else ''})"
        with clock.phase("train", trial):
            if i:  # a fresh model, initialised exactly as the first trial's
                del model
                gc.collect()
                memory = MemoryMonitor().start()
                set_seed(cell.seed)
                model = strategy.prepare(reload_base(), params)
            spec = cell.train.model_copy(update={"learning_rate": lr})
            usage = train(model, tok, examples, spec, cell.budget, cell.seed, memory=memory,
                          progress_file=progress_file, trial=trial, snapshot_at=at,
                          snapshot_dir=snapshot_dir / f"trial{i}" if snapshot_dir else None, **train_kwargs)
            memory.stop()
            loss = tuning_loss(model, tok, cell) if usage["stopped_by"] != "nan" else math.inf
            loss = loss if math.isfinite(loss) else None
            trials.append({"learning_rate": lr, "multiplier": mult, "tuning_loss": loss, "tokens": usage["tokens"],
                           "steps": usage["steps"], "seconds": usage["seconds"], "stopped_by": usage["stopped_by"],
                           "loss_last": usage["loss_last"], "objective": objective, "chosen": False,
                           "extension": i >= len(grid)})
            if cell.lr_from:
                trials[-1]["searched_by"] = cell.lr_from
            if forgetting:
                trials[-1]["general_ppl"] = general_ppl(model, tok, cell) if loss is not None else None
                trials[-1]["within_ceiling"] = t_ppl(trials[-1]) <= ceiling
            usages.append(usage)
            if choose(trials, objective, ceiling) == i:  # the best so far: keep its trained part
                kept = i
                shutil.rmtree(keep / "best", ignore_errors=True)
                strategy.save(model, keep / "best")

    try:
        for mult in grid:
            run_trial(mult)
        while len(trials) - len(grid) < limit and (mult := next_multiplier(trials, kept)):
            run_trial(mult)
        chosen = kept if kept is not None else len(trials) - 1  # all diverged: report the last, as diverged
        trials[chosen]["chosen"] = True
        if chosen != len(trials) - 1:
            del model
            gc.collect()
            with clock.phase("train", "reload chosen"):
                model = strategy.load(reload_base(), keep / "best")
    finally:
        shutil.rmtree(keep, ignore_errors=True)
    usage = {**usages[chosen],
             "peak_memory_mb": max(u["peak_memory_mb"] for u in usages),
             "peak_rss_mb": max(u["peak_rss_mb"] for u in usages),
             "tuning_trials": len(trials),
             "tuning_tokens": sum(u["tokens"] for u in usages),
             "tuning_seconds": round(sum(u["seconds"] for u in usages), 2),
             "tuning_flops": sum(u["flops"] for u in usages),
             "tuning_objective": objective,
             "tuning_bracket": bracket(trials, limit)}
    if cell.lr_from:
        usage["tuning_searched_by"] = cell.lr_from
    if forgetting:
        usage.update(tuning_base_general_ppl=base_ppl, tuning_general_ppl_ceiling=ceiling)
    return model, usage, trials
