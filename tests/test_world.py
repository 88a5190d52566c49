"""The tiny world is a pure function of its seed, and the shipped files are what the seed makes."""

from __future__ import annotations

import filecmp
import random

from conftest import TINY_WORLD

from harness.world.chat import safety_split
from harness.world.corpus import gsm_test, pretraining_documents, record_task
from harness.world.export import export_all
from harness.world.world import make_world


def test_same_seed_same_world_and_corpus():
    assert make_world(0) == make_world(0)
    assert make_world(0) != make_world(1)
    docs = pretraining_documents(make_world(0), random.Random(0), n=300)
    assert docs == pretraining_documents(make_world(0), random.Random(0), n=300)
    assert docs != pretraining_documents(make_world(0), random.Random(1), n=300)


def test_world_is_bilingual_and_unique():
    world = make_world(0)
    assert len({p.en for p in world.people}) == len(world.people) == 120
    assert len({p.zh for p in world.people}) == len(world.people)
    assert all(any("\u4e00" <= ch <= "\u9fff" for ch in p.zh) for p in world.people)


def test_held_out_items_never_appear_in_pretraining_text():
    world = make_world(0)
    docs = "\n".join(pretraining_documents(world, random.Random(0), n=20_000))
    split = safety_split(0)
    assert not any(s.prompt in docs for s in split.test_harmful + split.test_benign)
    assert not any(p.question in docs for p in gsm_test(world))
    assert ", city: " not in docs and ", job: " not in docs  # the task's output format is new to the base model


def test_task_splits_cover_disjoint_people():
    task = record_task(make_world(0))
    names = {split: {ex.output.split(", ")[0] for ex in rows} for split, rows in task.items()}
    assert not names["train"] & names["test"] and not names["train"] & names["validation"]
    assert all(", city: " in ex.output and ", pet: " in ex.output for rows in task.values() for ex in rows)


def test_shipped_data_is_exactly_what_the_seed_exports(tmp_path):
    export_all(make_world(0), tmp_path)
    shipped = TINY_WORLD / "data"
    files = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert len(files) > 10
    mismatched = [str(f) for f in files if not filecmp.cmp(tmp_path / f, shipped / f, shallow=False)]
    assert not mismatched
