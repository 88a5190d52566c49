"""The data layer: every format loads, the loss mask is exactly the answer, packing isolates examples,
hygiene finds planted duplicates and a planted benchmark item, bad rows are named by line."""

from __future__ import annotations

import csv
import json
import random

import pytest
import torch
from conftest import SHARED_DATA, TINY_WORLD

from harness.config import DataSpec, EvalSpec, ModelSpec, TrainSpec
from harness.data import (
    IGNORE,
    budgeted,
    clean,
    collator,
    completion_text,
    contaminated,
    encode,
    load_split,
    prepare_train,
    prompt_text,
    reference,
    scored_pair,
    train_examples,
)
from harness.data.native import FormatError, read_mmlu
from harness.matrix import Cell

ALPACA = [{"instruction": f"Name item {i}.", "input": f"context {i}" if i % 2 else "", "output": f"answer {i}"}
          for i in range(20)]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def spec(path, **kw):
    return DataSpec(path=str(path), **kw)


def trained(tok, enc) -> str:
    return tok.decode([t for t in enc["labels"] if t != IGNORE])


def test_each_format_loads_into_the_same_example(tmp_path, world_tok):
    (tmp_path / "a.json").write_text(json.dumps(ALPACA, indent=2), encoding="utf-8")
    write_jsonl(tmp_path / "pc.jsonl", [{"prompt": r["instruction"], "completion": r["output"]} for r in ALPACA])
    write_jsonl(tmp_path / "chat.jsonl", [{"messages": [{"role": "user", "content": r["instruction"]},
                                                        {"role": "assistant", "content": r["output"]}]}
                                          for r in ALPACA])
    with (tmp_path / "qa.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["question", "answer"])
        w.writerows([[r["instruction"], r["output"]] for r in ALPACA])
    import pandas as pd

    pd.DataFrame({"q": [r["instruction"] for r in ALPACA], "a": [r["output"] for r in ALPACA]}).to_parquet(
        tmp_path / "qa.parquet")
    sources = [spec(tmp_path / "pc.jsonl"), spec(tmp_path / "chat.jsonl"),
               spec(tmp_path / "qa.csv", columns={"instruction": "question", "output": "answer"}),
               spec(tmp_path / "qa.parquet", format="prompt_completion", columns={"prompt": "q", "completion": "a"})]
    want = {r["instruction"]: r["output"] for r in ALPACA}
    for s in sources:
        rows = sum((load_split(s, tmp_path, split) for split in ("train", "validation", "test")), [])
        assert {r["messages"][0]["content"]: reference(r) for r in rows} == want, s
    write_jsonl(tmp_path / "t.jsonl", [{"text": f"Document {i}: Ada lives in Karsk."} for i in range(20)])
    text = load_split(spec(tmp_path / "t.jsonl", validation=1, test=1), tmp_path, "train")
    assert len(text) == 18 and all(set(r) == {"id", "text"} for r in text)
    alpaca = load_split(spec(tmp_path / "a.json", validation=2, test=2), tmp_path, "train")
    assert len(alpaca) == 16 and alpaca[0]["id"].endswith("a.json:2")  # the line the object starts on
    one = next(r for r in alpaca if r["messages"][0]["content"] == "Name item 1.\n\ncontext 1")
    assert reference(one) == "answer 1"


def test_the_loss_mask_covers_exactly_the_answer_tokens(tmp_path, world_tok):
    path = write_jsonl(tmp_path / "chat.jsonl", [{"messages": [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Where is Ada?"},
        {"role": "assistant", "content": "Karsk."}, {"role": "user", "content": "And Bo?"},
        {"role": "assistant", "content": "Poveholm."}]}] * 1)
    ex = {"id": "x", "messages": json.loads(path.read_text())["messages"]}
    enc = encode(world_tok, ex, 256)
    assert trained(world_tok, enc) == "Karsk.<|end|>\nPoveholm.<|end|>\n"  # both assistant turns, nothing else
    assert completion_text(world_tok, ex) == "Poveholm.<|end|>\n"
    assert prompt_text(world_tok, ex).endswith("And Bo?<|end|>\n<|assistant|>\n")
    whole = world_tok.bos_token + prompt_text(world_tok, ex) + completion_text(world_tok, ex)
    assert world_tok.decode(enc["input_ids"]) == whole
    answer_ids = world_tok(completion_text(world_tok, ex), add_special_tokens=False)["input_ids"]
    assert enc["labels"][-len(answer_ids):] == answer_ids == enc["input_ids"][-len(answer_ids):]
    everything = encode(world_tok, ex, 256, loss_on="all")
    assert everything["labels"] == [IGNORE] + everything["input_ids"][1:]
    plain = encode(world_tok, ex, 256, template="alpaca")
    assert trained(world_tok, plain) == "Karsk.<|eos|>Poveholm.<|eos|>".replace("<|eos|>", world_tok.eos_token)
    text = encode(world_tok, {"id": "t", "text": "Ada lives in Karsk."}, 256)
    assert trained(world_tok, text) == "Ada lives in Karsk." + world_tok.eos_token


def test_truncation_keeps_the_answer_or_drops_with_a_reason(tmp_path, world_tok):
    ex = {"id": "l", "messages": [{"role": "user", "content": "word " * 400},
                                  {"role": "assistant", "content": "short"}]}
    left = encode(world_tok, ex, 64)
    assert len(left["input_ids"]) == 64 and trained(world_tok, left) == "short<|end|>\n"
    right = encode(world_tok, ex, 64, truncation="right")
    assert right["input_ids"] == encode(world_tok, ex, None)["input_ids"][:64] and trained(world_tok, right) == ""
    assert encode(world_tok, ex, 64, truncation="drop") is None
    prompt, completion = scored_pair(world_tok, ex, "auto", 64)  # what the in-domain perplexity scores
    assert completion == "short<|end|>\n" and prompt_text(world_tok, ex).endswith(prompt)
    assert len(world_tok(prompt + completion, add_special_tokens=False)["input_ids"]) <= 63
    write_jsonl(tmp_path / "train.jsonl", ALPACA[:10] + [{"instruction": "word " * 400, "output": "short"}])
    write_jsonl(tmp_path / "validation.jsonl", ALPACA[10:12])
    write_jsonl(tmp_path / "test.jsonl", ALPACA[12:14])
    for truncation, kept, dropped, cut in (("drop", 10, 1, 0), ("left", 11, 0, 1)):
        examples, report = train_examples(spec(tmp_path, max_length=64, truncation=truncation), world_tok, tmp_path)
        t = report["tokenized"]
        assert (len(examples), t["dropped_overlong"], t["truncated"]) == (kept, dropped, cut)
        assert all(len(e["input_ids"]) <= 64 for e in examples)
    assert t["tokens"] == sum(len(e["input_ids"]) for e in examples)


def test_packing_keeps_every_token_and_examples_do_not_attend_to_each_other(tiny_model, world_tok):
    model, _ = tiny_model
    model.train()  # as in training (the tiny Llama has no dropout, so outputs are deterministic)
    rows = load_split(DataSpec(path="zoo:tiny-world/record"), TINY_WORLD, "train")[:40]
    examples = budgeted([encode(world_tok, r, 256) for r in rows], tokens=1500, seed=0)
    collate, counting = collator(world_tok, packing=True)
    batch = collate(examples[:5])
    lengths = [len(e["input_ids"]) for e in examples[:5]]
    assert counting == "all" and batch["input_ids"].shape == (1, sum(lengths)) and "attention_mask" not in batch
    assert sum(sum(t != IGNORE for t in e["labels"]) for e in examples[:5]) == int((batch["labels"] != IGNORE).sum())
    total = sum(collate(examples[i:i + 8])["input_ids"].numel() for i in range(0, len(examples), 8))
    assert total == 1500  # the exact budget survives packing
    model.config.use_cache = True  # the default of most hub configs; packing must hold regardless
    for impl in ("sdpa", "eager"):
        model.config._attn_implementation = impl
        with torch.no_grad():  # called as the Trainer calls it: the whole batch as keyword arguments
            packed = model(**{k: v for k, v in batch.items() if k != "labels"}).logits[0]
            start = 0
            for e in examples[:5]:
                alone = model(input_ids=torch.tensor([e["input_ids"]])).logits[0]
                assert torch.allclose(packed[start:start + len(alone)], alone, atol=1e-5), impl
                start += len(alone)
    # and the loss of a packed batch equals the token-weighted loss of the examples run alone
    with torch.no_grad():
        loss_packed = model(**batch).loss
        sums = [model(input_ids=torch.tensor([e["input_ids"]]), labels=torch.tensor([e["labels"]])).loss
                * sum(t != IGNORE for t in e["labels"][1:]) for e in examples[:5]]
    targets = int((batch["labels"] != IGNORE).sum())
    assert torch.allclose(loss_packed, sum(sums) / targets, atol=1e-5)


def test_packed_training_consumes_exactly_the_budget_and_matches_padded_training(tiny_model_dir, world_tok, tmp_path):
    import strategies  # noqa: F401
    from harness.models import load
    from harness.train import train

    rows = load_split(DataSpec(path="zoo:tiny-world/record"), TINY_WORLD, "train")
    examples = budgeted([encode(world_tok, r, 256) for r in rows], tokens=900, seed=0)
    usage = {}
    for packing in (False, True):
        torch.manual_seed(0)
        model, _ = load(ModelSpec(id=str(tiny_model_dir)))
        usage[packing] = train(model, world_tok, examples, TrainSpec(batch_size=4, learning_rate=1e-3),
                               {"tokens": 900}, 0, tmp_path / str(packing), packing=packing)
    assert usage[True]["tokens"] == usage[False]["tokens"] == 900
    assert usage[True]["steps"] == usage[False]["steps"] == -(-len(examples) // 4)
    # the same tokens, masks and steps: padding-free packing changes the speed, not the training
    assert usage[True]["loss_curve"] == pytest.approx(usage[False]["loss_curve"], rel=1e-4)


def test_dedup_drops_planted_exact_and_near_duplicates(tmp_path):
    rows = ALPACA[:10] + [ALPACA[3], {**ALPACA[5], "output": "ANSWER   5!"}, {**ALPACA[7], "instruction": ""},
                          {**ALPACA[8], "output": " "}]
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    s = spec(path, validation=1, test=1)
    from harness.data.dataset import _splits

    _, report, _ = _splits(s, tmp_path)
    assert report["dropped"] == {"duplicate_exact": 1, "duplicate_near": 1, "empty_answer": 1}
    ids = {d["id"].rsplit(":", 1)[1]: d["same_as"].rsplit(":", 1)[1] for k in ("duplicate_exact", "duplicate_near")
           for d in report["dropped_examples"][k]}
    assert ids == {"11": "4", "12": "6"}
    assert sum(len(load_split(s, tmp_path, x)) for x in ("train", "validation", "test")) == 11
    assert report["dropped_examples"].get("empty_prompt") is None  # the instruction was empty but input was not


BENCHMARKS = {"tasks": [{"task": "mmlu", "data": str(TINY_WORLD / "data" / "mmlu"), "formulation": "cloze"},
                        {"task": "ceval-valid", "data": str(TINY_WORLD / "data" / "ceval")}]}


def _cell(data: DataSpec, tmp_path, **eval_kw) -> Cell:
    return Cell(matrix="m", model=ModelSpec(id="tiny-world"), strategy="full", params={}, data=data,
                budget={"tokens": 400}, train=TrainSpec(), seed=0, eval=EvalSpec(**eval_kw), root=str(tmp_path))


def test_a_planted_benchmark_item_is_found_reported_and_can_be_dropped(tmp_path, world_tok):
    mmlu = read_mmlu(TINY_WORLD / "data" / "mmlu", "test")
    planted = mmlu[7]
    leak = {"instruction": "Answer the question.", "input": planted.question + " " + " ".join(planted.choices),
            "output": planted.choices[planted.answer]}
    path = write_jsonl(tmp_path / "train.jsonl", ALPACA + [leak])
    data = spec(path, validation=2, test=2)
    cell = _cell(data, tmp_path, suites=["perplexity", "benchmarks"], benchmarks=BENCHMARKS)
    found = contaminated(cell)
    assert [c["id"] for c in found["mmlu"]["contaminated"]] == [f"mmlu:{planted.subject}:7"]
    assert found["ceval"]["contaminated"] == [] and found["mmlu"]["items"] == len(mmlu)
    assert clean(cell, "mmlu", mmlu) == mmlu  # reported, still scored unless asked
    said = []
    examples = prepare_train(cell, world_tok, tmp_path / "results", progress=said.append)
    assert said[-1].startswith("  mmlu: items share 13-grams with the training data (ids in ")  # one line, no ids
    assert "\n" not in said[-1] and planted.question not in said[-1]
    assert sum(len(e["input_ids"]) for e in examples) == 400
    report = json.loads((tmp_path / "results" / "data_report.json").read_text())
    assert report["contamination"]["sets"]["mmlu"]["contaminated"][0]["id"] == f"mmlu:{planted.subject}:7"
    assert f"mmlu 1/{len(mmlu)}" in report["summary"] and report["tokenized"]["tiny-world"]["examples"] == 17
    drop = _cell(data.model_copy(update={"drop_contaminated": True}), tmp_path, suites=["benchmarks"],
                 benchmarks=BENCHMARKS)
    assert clean(drop, "mmlu", mmlu) == mmlu[:7] + mmlu[8:]


def test_contaminated_test_items_are_dropped_from_the_task_split_when_asked(tmp_path):
    test = [{"instruction": f"Describe the harbour town number {i} and its long history of trade and fishing",
             "input": "", "output": f"town {i}"} for i in range(4)]
    write_jsonl(tmp_path / "train.jsonl", ALPACA + [test[2]])
    write_jsonl(tmp_path / "validation.jsonl", ALPACA[:2])
    write_jsonl(tmp_path / "test.jsonl", test)
    assert len(load_split(spec(tmp_path, dedup="none"), tmp_path, "test")) == 4
    kept = load_split(spec(tmp_path, drop_contaminated=True), tmp_path, "test")
    assert [reference(r) for r in kept] == ["town 0", "town 1", "town 3"]


def test_bad_rows_are_named_by_file_and_line_or_skipped_and_counted(tmp_path):
    good = [json.dumps(r) for r in ALPACA]
    path = tmp_path / "bad.jsonl"
    broken = ['{"instruction": "x", "output": ', json.dumps({"instruction": "y"}),
              json.dumps({"instruction": 3, "output": "z"})]
    path.write_text("\n".join(good[:2] + broken[:1] + good[2:4] + broken[1:] + good[4:]) + "\n", encoding="utf-8")
    with pytest.raises(FormatError, match=r"bad\.jsonl:3: not a valid JSON object.*--skip-bad-rows"):
        load_split(spec(path), tmp_path, "train")
    (tmp_path / "b2.jsonl").write_text("\n".join(good[:4] + [json.dumps({"instruction": "y"})]), encoding="utf-8")
    with pytest.raises(FormatError, match=r"b2\.jsonl:5: missing field 'output'"):
        load_split(spec(tmp_path / "b2.jsonl"), tmp_path, "train")
    (tmp_path / "b3.jsonl").write_text(json.dumps({"instruction": 3, "output": "z"}), encoding="utf-8")
    with pytest.raises(FormatError, match=r"b3\.jsonl:1: field 'instruction' must be a string, got int"):
        load_split(spec(tmp_path / "b3.jsonl"), tmp_path, "train")
    (tmp_path / "arr.json").write_text('[\n {"instruction": "a", "output": "b"},\n {"instruction": "a" "output"}\n]')
    with pytest.raises(FormatError, match=r"arr\.json:3: not valid JSON"):
        load_split(spec(tmp_path / "arr.json"), tmp_path, "train")
    from harness.data.dataset import _splits

    _, report, _ = _splits(spec(path, skip_bad_rows=True, validation=1, test=1), tmp_path)
    assert report["bad_rows_skipped"] == 3 and report["splits"]["train"] == 18
    assert [m.split(": ")[0].rsplit(":", 1)[1] for m in report["bad_rows"]] == ["3", "6", "7"]


def test_the_same_spec_gives_byte_identical_tokens_and_hits_the_cache(tmp_path, world_tok):
    path = write_jsonl(tmp_path / "c.jsonl", ALPACA)
    s = spec(path)
    a, first = train_examples(s, world_tok, tmp_path, tmp_path / "cache")
    b, second = train_examples(s, world_tok, tmp_path, tmp_path / "cache")
    c, _ = train_examples(s, world_tok, tmp_path)  # no cache: tokenised again
    assert (first["cache"], second["cache"]) == ("miss", "hit") and first["cache_key"] == second["cache_key"]
    assert json.dumps(a).encode() == json.dumps(b).encode() == json.dumps(c).encode()
    assert budgeted(a, 300, 0) == budgeted(b, 300, 0)
    shuffled = ALPACA[:]
    random.Random(1).shuffle(shuffled)
    write_jsonl(tmp_path / "s.jsonl", shuffled)  # carving depends on content, not on file order
    test = [reference(r) for r in load_split(s, tmp_path, "test")]
    assert len(test) == 2 and [reference(r) for r in load_split(spec(tmp_path / "s.jsonl"), tmp_path, "test")] == test
    write_jsonl(path, ALPACA[:-1])  # an edited file is a new key
    _, edited = train_examples(s, world_tok, tmp_path, tmp_path / "cache")
    assert edited["cache"] == "miss" and edited["cache_key"] != first["cache_key"]
    assert list((tmp_path / "cache").glob("*.json")) and not list((tmp_path / "cache").glob("*.pkl"))


def test_a_hub_id_offline_fails_with_a_message_naming_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(FormatError, match=r"hub dataset someone/missing-set \(main\)\[train\].*offline"):
        load_split(DataSpec(hub="someone/missing-set", hub_config="main"), tmp_path, "train")


def test_bad_data_stops_the_run_before_any_cell_and_skip_bad_rows_lets_it_through(tmp_path, capsys):
    from harness.cli import main

    lines = [json.dumps(r) for r in ALPACA]
    (tmp_path / "bad.jsonl").write_text("\n".join(lines[:4] + ["{oops"] + lines[4:]) + "\n", encoding="utf-8")
    matrix = tmp_path / "m.yaml"
    matrix.write_text("name: m\nmodels: tiny-world\ndata: {path: bad.jsonl}\nbudget: {tokens: 100}\n"
                      "strategies: [full]\neval: {suites: [perplexity]}\n", encoding="utf-8")
    assert main(["run", "--matrix", str(matrix), "--out", str(tmp_path / "r")]) == 2
    assert "bad.jsonl:5: not a valid JSON object" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()  # nothing ran
    from harness.data import check

    assert check(DataSpec(path="bad.jsonl", skip_bad_rows=True), tmp_path) is None
    from harness.cli import parser

    assert parser().parse_args(["run", "--matrix", str(matrix), "--skip-bad-rows"]).skip_bad_rows
    with pytest.raises(Exception, match="exactly one of data.path"):
        DataSpec(path="a.jsonl", hub="x/y")


@pytest.mark.shared_data
@pytest.mark.parametrize("name, rows", [("alpaca_en_demo.json", 999), ("alpaca_zh_demo.json", 1000)])
def test_the_real_alpaca_demo_sets_load_and_mask(name, rows, world_tok, tmp_path):
    path = SHARED_DATA / "llamafactory_sft" / name
    if not path.is_file():
        pytest.skip(f"{path} absent")
    s = DataSpec(path=str(path), validation=0.05, test=0.05)
    splits = {x: load_split(s, tmp_path, x) for x in ("train", "validation", "test")}
    from harness.data.dataset import _splits

    report = _splits(s, tmp_path)[1]
    assert report["rows_read"] == rows == sum(len(v) for v in splits.values()) + sum(report["dropped"].values())
    ex = splits["test"][0]
    enc = encode(world_tok, ex, 4096)
    assert trained(world_tok, enc) == completion_text(world_tok, ex) == reference(ex) + "<|end|>\n"


@pytest.mark.shared_data
def test_real_files_in_other_layouts_load_through_a_column_mapping(tmp_path):
    dialogsum, gsm8k = SHARED_DATA / "dialogsum" / "dialogsum.dev.jsonl", SHARED_DATA / "gsm8k" / "train.jsonl"
    if not (dialogsum.is_file() and gsm8k.is_file()):
        pytest.skip("../shared/data absent")
    d = load_split(DataSpec(path=str(dialogsum), columns={"prompt": "dialogue", "completion": "summary"}), tmp_path,
                   "test")
    assert len(d) == 50 and d[0]["messages"][0]["content"].startswith("#Person")
    g = load_split(DataSpec(path=str(gsm8k), columns={"instruction": "question", "output": "answer"}, samples=100),
                   tmp_path, "train")
    assert len(g) == 100 and all("####" in reference(r) for r in g)


def test_packing_refuses_prefix_tuning_whose_virtual_tokens_would_leak_across_examples(tiny_model, world_tok):
    import strategies  # noqa: F401
    from harness.config import ConfigError
    from harness.matrix import resolve_params
    from strategies.base import STRATEGIES

    model, _ = tiny_model
    prefix = STRATEGIES.get("prefix")()
    model = prefix.prepare(model, resolve_params(prefix.Params, {"num_virtual_tokens": 4}))
    with pytest.raises(ConfigError, match="packing cannot be combined with prefix"):
        collator(world_tok, True, model)
    assert collator(world_tok, False, model)[1] == "non_padding"


def test_a_group_column_travels_with_each_item_and_a_missing_value_is_named(tmp_path):
    rows = load_split(DataSpec(path="zoo:tiny-world/record", group="person"), TINY_WORLD, "test")
    people = [r["group"] for r in rows]
    assert len(rows) == 96 and len(set(people)) == 24 and all(people.count(p) == 4 for p in people)
    assert all(reference(r).startswith(r["group"] + ",") for r in rows)  # the card names its person
    assert "group" not in load_split(DataSpec(path="zoo:tiny-world/record"), TINY_WORLD, "test")[0]
    bad = write_jsonl(tmp_path / "train.jsonl", [{**r, "person": "Ada"} for r in ALPACA[:3]] + [ALPACA[3]])
    with pytest.raises(FormatError, match=r"train.jsonl:4: no value in the group column 'person' \(data.group\)"):
        load_split(spec(bad, group="person"), tmp_path, "train")
