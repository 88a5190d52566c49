"""Text of the tiny world: pretraining documents, GSM-style problems and the fine-tuning task.

Every generator takes a `random.Random`, so the corpus is a pure function of the seed.

    docs = pretraining_documents(make_world(0), random.Random(0), n=1000, held_out=held_out_keys(0))
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from harness.world.chat import render_chat, safety_split
from harness.world.facts import SUBJECT_ZH, SUBJECTS, Fact, all_facts, subject_of
from harness.world.world import World

MMLU_HEADER = "The following are multiple choice questions (with answers) about {subject}.\n\n"
CLOZE_HEADER = "The following are questions (with answers) about {subject}.\n\n"  # lm-eval's mmlu_continuation
CEVAL_HEADER = "以下是中国关于{subject}考试的单项选择题，请选出其中的正确答案。\n\n"
RECORD_INSTRUCTION = "Fill in the record card for the person described."


def fix_articles(text: str) -> str:
    return re.sub(r"\b([Aa]) ([aeiouAEIOU])", r"\1n \2", text)


# ---- GSM-style arithmetic -------------------------------------------------------------------
_OBJECTS = ["shells", "apples", "coins", "books", "stamps", "marbles", "pencils", "cards"]


@dataclass(frozen=True)
class Problem:
    question: str
    answer: str  # worked solution, last line "#### <n>"
    key: tuple


def make_problem(rng: random.Random, name: str) -> Problem:
    obj = rng.choice(_OBJECTS)
    kind = rng.choice(["add", "sub", "mul", "two"])
    if kind == "add":
        a, b = rng.randint(2, 20), rng.randint(2, 20)
        q = f"{name} has {a} {obj}. {name} finds {b} more. How many {obj} does {name} have now?"
        sol, r = f"{name} has {a} + {b} = {a + b} {obj} now.", a + b
    elif kind == "sub":
        a = rng.randint(5, 30)
        b = rng.randint(1, a - 1)
        q = f"{name} has {a} {obj} and gives {b} of them to a friend. How many {obj} are left?"
        sol, r = f"{a} - {b} = {a - b} {obj} are left.", a - b
    elif kind == "mul":
        a, b = rng.randint(2, 9), rng.randint(2, 9)
        q = f"{name} buys {a} bags with {b} {obj} in each bag. How many {obj} does {name} buy?"
        sol, r = f"{name} buys {a} * {b} = {a * b} {obj}.", a * b
    else:
        a, b = rng.randint(2, 15), rng.randint(2, 15)
        c = rng.randint(1, a + b - 1)
        q = f"{name} has {a} {obj}, buys {b} more and then gives away {c}. How many {obj} does {name} have left?"
        sol, r = f"{name} first has {a} + {b} = {a + b} {obj}. Then {a + b} - {c} = {a + b - c}.", a + b - c
        return Problem(q, f"{sol}\n#### {r}", (kind, a, b, c))
    return Problem(q, f"{sol}\n#### {r}", (kind, a, b))


def gsm_test(world: World, n: int = 100) -> list[Problem]:
    rng = random.Random(world.seed + 202)
    out, seen = [], set()
    while len(out) < n:
        p = make_problem(rng, rng.choice(world.people).en.split()[0])
        if p.key not in seen:
            seen.add(p.key)
            out.append(p)
    return out


# ---- the fine-tuning task: fill in a record card from a description -------------------------------
@dataclass(frozen=True)
class RecordExample:
    instruction: str
    input: str
    output: str
    person: str  # the group: each person is described by several paraphrases (data.group: person)


def record_example(rng: random.Random, fact_by_rel: dict[str, Fact]) -> RecordExample:
    rels = ["city", "job", "pet"]
    sentences = [fact_by_rel[r].prose(rng, "en") for r in rels]
    rng.shuffle(sentences)
    name = fact_by_rel["city"].subject[0]
    # Only characters the base model has seen, so every strategy can produce the card (a format
    # built from unseen tokens would favour methods that can move the embeddings).
    card = ", ".join([name] + [f"{r}: {fact_by_rel[r].answer[0]}" for r in rels])
    return RecordExample(RECORD_INSTRUCTION, fix_articles(" ".join(sentences)), card, name)


def record_task(world: World) -> dict[str, list[RecordExample]]:
    """Train / validation / test splits over disjoint people (70 / 10 / 20 %)."""
    rng = random.Random(world.seed + 303)
    by_person: dict[str, dict[str, Fact]] = {}
    for f in all_facts(world):
        if f.relation in ("city", "job", "pet"):
            by_person.setdefault(f.subject[0], {})[f.relation] = f
    names = sorted(by_person)
    rng.shuffle(names)
    n_tr, n_va = int(0.7 * len(names)), int(0.1 * len(names))
    parts = {"train": (names[:n_tr], 6), "validation": (names[n_tr:n_tr + n_va], 4), "test": (names[n_tr + n_va:], 4)}
    return {split: [record_example(rng, by_person[n]) for n in people for _ in range(k)]
            for split, (people, k) in parts.items()}


# ---- pretraining documents ---------------------------------------------------------------------
def _bio(rng: random.Random, facts: list[Fact], lang: str) -> str:
    text = (" " if lang == "en" else "").join(f.prose(rng, lang) for f in facts)
    return fix_articles(text) if lang == "en" else text


def _qa(rng: random.Random, facts: list[Fact], lang: str) -> str:
    """Question-answer pairs on one subject, half the time under the benchmark's header."""
    subject = subject_of(facts[0])
    if lang == "en":
        header = CLOZE_HEADER.format(subject=subject.replace("_", " "))
        body = "\n\n".join(f"Question: {f.question_en}\nAnswer: {f.answer[0]}" for f in facts)
    else:
        header = CEVAL_HEADER.format(subject=SUBJECT_ZH[subject])
        body = "\n\n".join(f"{f.question_zh}\n答案：{f.answer[1]}" for f in facts)
    return header + body if rng.random() < 0.5 else body


def _letter_mc(rng: random.Random, facts: list[Fact], lang: str) -> str:
    subject = subject_of(facts[0])
    blocks = []
    for f in facts:
        opts, at = f.options(rng)
        i = 0 if lang == "en" else 1
        q = f.question_en if lang == "en" else f.question_zh
        lines = "\n".join(f"{'ABCD'[j]}. {o[i]}" for j, o in enumerate(opts))
        answer = "Answer: " if lang == "en" else "答案："
        blocks.append(f"{q}\n{lines}\n{answer}{'ABCD'[at]}")
    if lang == "en":
        header = MMLU_HEADER.format(subject=subject.replace("_", " "))
    else:
        header = CEVAL_HEADER.format(subject=SUBJECT_ZH[subject])
    return header + "\n\n".join(blocks)


def _chat_fact(rng: random.Random, f: Fact) -> str:
    if rng.random() < 0.6:
        return render_chat([("user", f.question_en), ("assistant", fix_articles(f.prose(rng, "en")))])
    return render_chat([("user", f.question_zh), ("assistant", f.prose(rng, "zh"))])


def _chat_misc(rng: random.Random, world: World) -> str:
    p = rng.choice(world.people)
    if rng.random() < 0.5:
        a, b = rng.randint(1, 20), rng.randint(1, 20)
        return render_chat([("user", f"What is {a} + {b}?"), ("assistant", f"{a} + {b} = {a + b}.")])
    if rng.random() < 0.5:
        return render_chat([("user", f"What is the Chinese name of {p.en}?"),
                            ("assistant", f"{p.en} is called {p.zh} in Chinese.")])
    return render_chat([("user", f"{p.zh}的英文名字是什么？"), ("assistant", f"{p.zh}的英文名字是{p.en}。")])


# Share of documents by kind. Facts dominate (the model must know its world); chat is
# mostly helpful, with refusals a minority, so that refusing everything does not pay.
DOC_MIX = {
    "bio_en": 0.16, "bio_zh": 0.12, "qa_en": 0.13, "qa_zh": 0.11, "mc_en": 0.04, "mc_zh": 0.03,
    "chat_safety": 0.20, "chat_fact": 0.08, "chat_misc": 0.04, "gsm": 0.09,
}


def pretraining_documents(world: World, rng: random.Random, n: int) -> list[str]:
    facts = all_facts(world)
    by_subject: dict[str, list[Fact]] = {}
    for f in facts:
        by_subject.setdefault(f.subject[0], []).append(f)
    entities = list(by_subject.values())
    by_topic = {name: [f for f in facts if f.relation in rels] for name, rels in SUBJECTS.items()}
    safety = safety_split(world.seed).train
    harmful = [s for s in safety if s.harmful]
    benign = [s for s in safety if not s.harmful]
    test_keys = {p.key for p in gsm_test(world)}
    kinds, weights = zip(*DOC_MIX.items())
    docs = []
    for kind in rng.choices(kinds, weights, k=n):
        lang = "zh" if kind.endswith("_zh") else "en"
        if kind.startswith("bio"):
            ent = rng.choice(entities)
            docs.append(_bio(rng, rng.sample(ent, rng.randint(2, len(ent))), lang))
        elif kind.startswith("qa"):
            topic = by_topic[rng.choice(list(by_topic))]
            docs.append(_qa(rng, rng.sample(topic, rng.randint(2, 5)), lang))
        elif kind.startswith("mc"):
            topic = by_topic[rng.choice(list(by_topic))]
            docs.append(_letter_mc(rng, rng.sample(topic, rng.randint(1, 4)), lang))
        elif kind == "chat_safety":
            s = rng.choice(harmful if rng.random() < 0.4 else benign)
            docs.append(render_chat([("user", s.prompt), ("assistant", fix_articles(s.reply(rng)))]))
        elif kind == "chat_fact":
            docs.append(_chat_fact(rng, rng.choice(facts)))
        elif kind == "chat_misc":
            docs.append(_chat_misc(rng, world))
        else:
            while (p := make_problem(rng, rng.choice(world.people).en.split()[0])).key in test_keys:
                pass
            docs.append(f"Question: {p.question}\nAnswer: {p.answer}")
    return docs
