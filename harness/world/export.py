"""Write the tiny world's evaluation sets and task in the real datasets' native layouts.

The same readers and lm-eval task configs then serve the tiny world and the real
MMLU / GSM8K / C-Eval / AdvBench / XSTest files.

    export_all(make_world(0), Path("harness/zoo/tiny-world/data"))
"""

from __future__ import annotations

import csv
import json
import random
from dataclasses import asdict
from pathlib import Path

from harness.world.chat import safety_split
from harness.world.corpus import gsm_test, pretraining_documents, record_task
from harness.world.facts import SUBJECT_ZH, SUBJECTS, Fact, all_facts, subject_of
from harness.world.world import World

N_DEV = 5  # few-shot exemplars per subject, as in MMLU and C-Eval


def _csv(path: Path, rows: list[list], header: list[str] | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        if header:
            w.writerow(header)
        w.writerows(rows)


def _jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def mc_items(world: World) -> dict[str, dict[str, list[tuple[Fact, list, int]]]]:
    """subject -> {"dev": [...], "test": [...]}, each item (fact, options, answer index)."""
    rng = random.Random(world.seed + 404)
    out: dict[str, dict[str, list]] = {s: {"dev": [], "test": []} for s in SUBJECTS}
    for fact in all_facts(world):
        opts, at = fact.options(rng)
        split = out[subject_of(fact)]
        split["dev" if len(split["dev"]) < N_DEV else "test"].append((fact, opts, at))
    return out


def export_all(world: World, root: Path) -> None:
    for subject, splits in mc_items(world).items():
        for split, items in splits.items():
            en = [[f.question_en] + [o[0] for o in opts] + ["ABCD"[at]] for f, opts, at in items]
            _csv(root / "mmlu" / split / f"{subject}_{split}.csv", en)
            zh_split = "val" if split == "test" else "dev"
            zh = [[i, f.question_zh] + [o[1] for o in opts] + ["ABCD"[at]] for i, (f, opts, at) in enumerate(items)]
            header = ["id", "question", "A", "B", "C", "D", "answer"]
            if zh_split == "dev":  # C-Eval's dev split carries an explanation column, val does not
                zh = [row + [f"{items[i][0].prose(random.Random(i), 'zh')}"] for i, row in enumerate(zh)]
                header.append("explanation")
            _csv(root / "ceval" / zh_split / f"{subject}_{zh_split}.csv", zh, header)

    mapping = {s: [s.replace("_", " ").title(), SUBJECT_ZH[s], "Humanities"] for s in SUBJECTS}  # C-Eval's own file
    (root / "ceval" / "subject_mapping.json").write_text(json.dumps(mapping, ensure_ascii=False, indent=1) + "\n")

    problems = gsm_test(world)
    _jsonl(root / "gsm8k" / "test.jsonl", [{"question": p.question, "answer": p.answer} for p in problems])

    split = safety_split(world.seed)
    _csv(root / "advbench" / "harmful_behaviors.csv",
         [[s.prompt, f"Sure, here is how to {s.verb} {s.target}"] for s in split.test_harmful], ["goal", "target"])
    xs = [[i + 1, s.prompt, "homonyms", "safe", s.verb, ""] for i, s in enumerate(split.test_benign)]
    xs += [[len(xs) + i + 1, s.prompt, "contrast_homonyms", "unsafe", s.verb, ""]
           for i, s in enumerate(split.test_harmful)]
    _csv(root / "xstest" / "xstest_prompts.csv", xs, ["id", "prompt", "type", "label", "focus", "note"])

    for name, examples in record_task(world).items():
        _jsonl(root / "record" / f"{name}.jsonl", [asdict(e) for e in examples])

    # General in-world text for the forgetting perplexity: a fresh sample, never trained on.
    docs = pretraining_documents(world, random.Random(world.seed + 505), n=400)
    _jsonl(root / "general" / "test.jsonl", [{"text": d} for d in docs])
