"""One consistent set per results folder, a bottom line from the numbers, readable tables, a quiet run."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import pytest
from conftest import REPO, TINY_WORLD
from fake_results import annotated_rows, binary, ppl_items, save_cell

from harness import store
from harness.cli import main
from harness.report.frame import current_set, load_results
from harness.report.leaderboard import write_leaderboard
from harness.report.table import number, uninformative

N = 200


def _section(md: str, title: str) -> str:
    start = md.index(f"## {title}")
    end = min(i for i in (md.find("\n## ", start + 3), md.find("\nHow to read", start), len(md)) if i > 0)
    return md[start:end]


def _older_copy(d, result: dict, transformers: str) -> dict:
    """The same cell measured earlier by another transformers: another id, the same config and seed."""
    old = copy.deepcopy(result)
    old.update(id="0ld" + result["id"][3:], finished_at="2020-01-01T00:00:00+00:00")
    old["env"] = {**old["env"], "packages": {**old["env"]["packages"], "transformers": transformers}}
    old["metrics"]["task_exact_match"]["value"] = 0.0  # would drag the mean down if it were averaged in
    store.save(d, old, store.load_items(d, result["id"]))
    return old


def test_numbers_print_with_sensible_significant_figures():
    assert number(310029503.0, "{:.2f}") == "3.1e8" and number(2.6e-5 * 1e9, "{:.2f}") == "2.6e4"
    assert number(5499.47, "{:.2f}") == "5499" and number(1.6234, "{:.2f}") == "1.62"
    assert number(0.0, "{:.3f}") == "0.000" and number(100.0, "{:.1f}") == "100.0"
    assert number(0.07, "{:.2f}", signed=True) == "+0.07" and number(None) == "–"


@pytest.fixture()
def tied(tmp_path):
    """Three trained cells tied at 1.000 on the task, an all-zero BLEU-like column, a letter-MMLU at chance."""
    d = tmp_path / "tied"
    chance = binary(0.25, N, 3)
    save_cell(d, "base", "base", {"task_exact_match": [0.0] * N, "task_rouge_1": [0.0] * N,
                                  "mmlu_acc": chance, "ppl_general": ppl_items(1.0)})
    for i, (name, trainable) in enumerate((("full", 100000), ("lora r=4", 4096), ("lora r=16", 16384))):
        save_cell(d, name, name.split()[0], {"task_exact_match": [1.0] * N, "task_rouge_1": [0.0] * N,
                                             "mmlu_acc": binary(0.25, N, 10 + i),
                                             "ppl_general": ppl_items(1.0 + 0.5 * i, seed=i)},
                  params={"r": trainable}, trainable=trainable, artifact_bytes=trainable * 4)
    save_cell(d, "prefix", "prefix", {"task_exact_match": binary(0.5, N, 30), "task_rouge_1": [0.0] * N,
                                      "mmlu_acc": binary(0.25, N, 31), "ppl_general": ppl_items(3.0, seed=9)},
              trainable=2048)
    return d


def test_tied_cells_share_a_rank_and_columns_without_information_move_to_details(tied):
    rows = {r["label"]: r for r in annotated_rows(tied)}
    assert {k: r["rank"]["task_exact_match"] for k, r in rows.items()} == {
        "base": 5, "full": 1, "lora r=4": 1, "lora r=16": 1, "prefix": 4}
    assert rows["full"]["best"]["task_exact_match"] and not rows["prefix"]["best"]["task_exact_match"]
    assert not any(r["best"]["task_rouge_1"] for r in rows.values())  # all equal: no best
    assert uninformative(list(rows.values()), "task_rouge_1") == "every cell scores 0.000"
    assert uninformative(list(rows.values()), "mmlu_acc") == "every cell at chance, 0.25 inside each 95% interval"
    md = write_leaderboard(tied, plot=False).read_text("utf-8")
    main_table = _section(md, "Task quality and cost")
    assert "task ROUGE-1" not in main_table and "**1.000** [1.000, 1.000] #1 |" in main_table
    assert "MMLU acc" not in _section(md, "Forgetting and safety")
    details = _section(md, "Details: columns that tell the cells apart in no way")
    assert "- **task ROUGE-1 ↑**: every cell scores 0.000" in details and "**0.000**" not in details
    assert "- **MMLU acc ↑**: every cell at chance" in details
    glossary = _section(md, "Columns")
    for head in ("peak MB", "artifact", "trainable params", "task ROUGE-1 ↑", "MMLU acc ↑", "PPL general ↓"):
        assert glossary.count(f"- **{head}**:") == 1
    assert "| 16.0 KB " in main_table  # lora r=4: 4096 * 4 bytes


def test_takeaways_name_the_best_cell_its_ties_and_its_indistinguishable_peers(tied, tmp_path):
    md = write_leaderboard(tied, plot=False).read_text("utf-8")
    assert md.index("## Takeaways") < md.index("## Task quality and cost")
    take = _section(md, "Takeaways")
    assert ("- **Task quality** (task EM ↑, all cells): best `full`, `lora r=16`, `lora r=4` at 1.000 [1.000, 1.000]; "
            "every other cell is significantly worse.") in take
    assert "- **Cost** (of the 3 trained cell(s) at the best task quality): the fewest trainable parameters: " \
           "`lora r=4` (4,096)" in take
    assert "task ROUGE-1 (every cell scores 0.000)" in take  # cannot tell apart, and never given a best
    assert "`prefix`: PPL general +" in take  # a significant forgetting regression against the base
    # planted peers: a cell 2 items of 200 behind the best is indistinguishable from it, one far behind is not
    d = tmp_path / "peers"
    best = binary(0.8, N, 1)
    close = list(best)
    close[best.index(1.0)] = 0.0
    close[best.index(1.0, best.index(1.0) + 1)] = 0.0
    save_cell(d, "base", "base", {"task_exact_match": binary(0.1, N, 0)})
    save_cell(d, "lora r=4", "lora", {"task_exact_match": best}, params={"r": 4}, trainable=4096)
    save_cell(d, "lora r=16", "lora", {"task_exact_match": close}, params={"r": 16}, trainable=16384)
    save_cell(d, "prefix", "prefix", {"task_exact_match": binary(0.3, N, 5)}, trainable=2048)
    take = _section(write_leaderboard(d, plot=False).read_text("utf-8"), "Takeaways")
    assert "best `lora r=4` at 0.8" in take and "indistinguishable from it: `lora r=16` (a difference of 0.0" in take
    assert "would be detected at 80% power; 200 items, training noise not measured)." in take


def test_all_zero_cells_get_no_best(tmp_path):
    d = tmp_path / "zero"
    for label, strategy in (("base", "base"), ("full", "full"), ("lora", "lora")):
        save_cell(d, label, strategy, {"task_exact_match": [0.0] * N}, trainable=0 if strategy == "base" else 10)
    take = _section(write_leaderboard(d, plot=False).read_text("utf-8"), "Takeaways")
    assert "no best, every cell scores 0.000" in take and "best `" not in take and "Cost" not in take


def test_cells_of_two_versions_are_never_averaged_and_the_report_says_so(tmp_path, capsys):
    d = tmp_path / "mixed"
    save_cell(d, "base", "base", {"task_exact_match": binary(0.1, N, 0)}, finished_at="2026-01-02T00:00:00+00:00")
    new = save_cell(d, "lora r=4", "lora", {"task_exact_match": binary(0.9, N, 1)}, params={"r": 4}, trainable=4096,
                    finished_at="2026-01-02T00:00:01+00:00")
    _older_copy(d, new, "4.0.0")
    kept, left_out = current_set(load_results(d))
    assert {r["id"] for r in kept} == {r["id"] for r in load_results(d)} - {"0ld" + new["id"][3:]}
    assert [r["id"] for r in left_out] == ["0ld" + new["id"][3:]]
    md = write_leaderboard(d, plot=False).read_text("utf-8")
    assert "- **Cells:** 2 (2 ok)" in md and "- **Left out:** 1 older cell(s) of another version or config" in md
    assert "transformers 4.0.0" in md.split("**Left out:**")[1].splitlines()[0]
    assert "0.900" not in md or "± " not in md  # one seed: no mean ± std over a stale copy
    summary = json.loads((d / "summary.json").read_text("utf-8"))
    assert [r["seeds"] for r in summary["rows"] if r["label"] == "lora r=4"] == [[0]]
    assert main(["compare", str(d), str(d)]) == 0
    assert "1 older cell(s) of another version or config left out" in capsys.readouterr().out


def test_the_header_lists_every_version_it_shows(tmp_path):
    d = tmp_path / "two-shas"
    save_cell(d, "base", "base", {"task_exact_match": binary(0.1, N, 0)})
    r = save_cell(d, "lora", "lora", {"task_exact_match": binary(0.9, N, 1)}, trainable=10)
    r["env"] = {**r["env"], "packages": {**r["env"]["packages"], "accelerate": "1.15.0"},
                "git": {"sha": "fedcba9876543210", "dirty": False}}
    store.save(d, r, store.load_items(d, r["id"]))
    versions = next(line for line in write_leaderboard(d, plot=False).read_text("utf-8").splitlines()
                    if line.startswith("- **Versions:**"))
    assert "torch 2.13.0" in versions and "accelerate 1.15.0" in versions
    assert "`0123456789 (1 cells), fedcba9876 (1 cells)`" in versions


def test_high_machine_load_flags_the_time_figures(tmp_path):
    d = tmp_path / "load"
    save_cell(d, "base", "base", {"task_exact_match": binary(0.1, N, 0)})
    busy = {"python": "3.11", "platform": "test", "device": "cpu", "packages": {"torch": "2.13.0"}, "cpus": 2,
            "load_start": 3.5, "load_end": 1.0}
    save_cell(d, "lora", "lora", {"task_exact_match": binary(0.9, N, 1)}, trainable=10,
              usage={"tokens": 1000, "seconds": 2.0, "tokens_per_second": 500.0, "peak_memory_mb": 100.0}, env=busy)
    md = write_leaderboard(d).read_text("utf-8")  # the plots too: the time panel rings the cell
    assert (d / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    assert "- **Machine load:** 1 cell(s) ran with the load average above 1.25x the 2 cores" in md
    headline, main_row = [line for line in md.splitlines() if line.startswith("| lora")][:2]
    assert "| 2.0 † " in headline and "| 100 " in headline  # the headline's train seconds are marked too
    assert "| 2.0 † " in main_row and "| 500 † " in main_row and "| 100 " in main_row  # memory is no time figure
    alone = {**busy, "load_start": 2.15, "load_end": 2.0}  # the run's own threads on 2 cores: not contention
    save_cell(d, "lora", "lora", {"task_exact_match": binary(0.9, N, 1)}, trainable=10,
              usage={"tokens": 1000, "seconds": 2.0, "tokens_per_second": 500.0, "peak_memory_mb": 100.0}, env=alone)
    md = write_leaderboard(d, plot=False).read_text("utf-8")
    assert "Machine load" not in md and " † " not in md


def test_sample_outputs_show_prompt_reference_base_and_cell_reply(tmp_path):
    d = tmp_path / "samples"
    refs = [[f"answer {i}"] for i in range(5)]
    base = save_cell(d, "base", "base", {"task_exact_match": [0.0] * 5})
    items = store.load_items(d, base["id"])
    store.save(d, base, {**items, "_predictions": [f"base says {i}" for i in range(5)],
                         "_prompts": [f"question {i}" for i in range(5)], "_references": refs})
    cell = save_cell(d, "lora", "lora", {"task_exact_match": [1.0, 1.0, 0.0, 1.0, 1.0]}, trainable=10)
    store.save(d, cell, {**store.load_items(d, cell["id"]), "_predictions": ["answer 0", "answer 1", "wrong | 2",
                                                                            "answer 3", "answer 4"],
                         "_prompts": [f"question {i}" for i in range(5)], "_references": refs})
    samples = _section(write_leaderboard(d, plot=False).read_text("utf-8"), "Sample outputs")
    lines = [line for line in samples.splitlines() if line.startswith("|")]
    assert len(lines) == 2 + 3  # header, rule, three items
    cells = [c.strip() for c in lines[2].replace("\\|", "¦").split("|")[1:6]]
    assert cells == ["2", "question 2", "answer 2", "base says 2", "wrong ¦ 2"]  # the worst item first, escaped


def test_float_drift_is_not_a_regression_at_the_default_tolerance(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    base_items, ppl = binary(0.1, N, 0), ppl_items(1.0)
    save_cell(a, "base", "base", {"task_exact_match": base_items, "ppl_general": ppl})
    drift = [[x * (1 + 1e-13) for x in ppl[0]], ppl[1]]  # another summation order
    save_cell(b, "base", "base", {"task_exact_match": base_items, "ppl_general": drift})
    assert main(["compare", str(a), str(b)]) == 0
    assert "0 regressed" in capsys.readouterr().out
    worse = [[x * 1.05 for x in ppl[0]], ppl[1]]  # a real 5% change still regresses
    save_cell(b, "base", "base", {"task_exact_match": base_items, "ppl_general": worse})
    assert main(["compare", str(a), str(b)]) == 1


QUIET = """
name: quiet
models: {model}
data: {{path: {data}}}
budget: {{tokens: 400}}
train: {{batch_size: 4}}
strategies: [{{name: qlora, params: {{r: 4}}}}]
eval:
  suites: [perplexity, task, benchmarks]
  benchmarks:
    tasks: [{{task: mmlu, data: {world}/mmlu, formulation: cloze}}]
  limit: 4
  max_new_tokens: 8
"""
NOISE = ("Warning", "WARNING", "warn(", "kernels-community", "pretrained", "13-gram", "Traceback")


@pytest.mark.slow
def test_a_run_prints_no_library_noise_supersedes_old_cells_and_compares_equal_to_itself(tmp_path, tiny_model_dir,
                                                                                         capsys):
    import shutil

    shutil.copytree(TINY_WORLD / "data" / "record", tmp_path / "record")
    matrix = tmp_path / "quiet.yaml"
    matrix.write_text(QUIET.format(model=tiny_model_dir, data=tmp_path / "record", world=TINY_WORLD / "data"))
    out = tmp_path / "out"
    env = {**__import__("os").environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

    def run(*args):
        return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True, env=env,
                              timeout=1800)

    first = run("run", "--matrix", str(matrix), "--out", str(out))  # the real terminal: runner and cell processes
    assert first.returncode == 0, first.stderr
    terminal = first.stdout + first.stderr
    assert not [n for n in NOISE if n in terminal], terminal
    logs = "".join(p.read_text("utf-8") for p in (out / "logs").glob("*.log"))
    assert "pretrained" in logs  # the library noise is kept, in the cell logs
    line = next(x for x in logs.splitlines() if "items share 13-grams with the training data (ids in " in x)
    assert line.lstrip().startswith("task_test")  # one line naming the sets; the item ids stay in the report
    result = store.load(out, next(i for i in store.stored_ids(out) if store.load(out, i)["label"] != "base"))
    assert result["env"]["cpus"] >= 1 and result["env"]["load_start"] is not None
    assert result["env"]["load_end"] is not None
    old = _older_copy(out, result, "4.0.0")
    capsys.readouterr()  # what follows reads what the commands print; nothing is left to train: in-process
    assert main(["compare", str(out), str(out)]) == 0  # the stale copy is left out, not paired twice
    assert main(["run", "--matrix", str(matrix), "--out", str(out)]) == 0
    assert "moved 1 result(s) of another version or config aside" in capsys.readouterr().out
    assert old["id"] not in store.stored_ids(out)
    aside = next((out / "aside").iterdir())
    assert aside.name.endswith("-superseded") and (aside / "cells" / f"{old['id']}.json").is_file()
    assert (aside / "items" / f"{old['id']}.json").is_file()
    summary = json.loads((out / "summary.json").read_text("utf-8"))
    assert sorted(len(r["seeds"]) for r in summary["rows"]) == [1, 1]
    md = (out / "LEADERBOARD.md").read_text("utf-8")
    assert "- **Cells:** 2 (2 ok)" in md and "**Left out:**" not in md and "## Takeaways" in md
    assert main(["compare", str(out), str(out)]) == 0 and "0 regressed" in capsys.readouterr().out
