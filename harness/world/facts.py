"""Facts of the tiny world and the sentences and questions that express them.

A `Fact` is one (subject, relation, answer) triple with its bilingual surface forms.
Prose templates feed pretraining; the question templates are the very ones the
MMLU-layout (English) and C-Eval-layout (Chinese) test sets ask.

    for fact in all_facts(make_world(0)): print(fact.question_en, fact.answer[0])
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from harness.world.world import COUNTRIES, FOODS, JOBS, PETS, RIVERS, World

# relation -> (subject in EN, subject in ZH) templates; {s} subject, {a} answer.
PROSE_EN = {
    "city": ["{s} lives in {a}.", "{s} has a home in {a}.", "The home of {s} is in {a}.",
             "{s} lives in the city of {a}."],
    "job": ["{s} works as a {a}.", "{s} is a {a} by trade.", "By profession, {s} is a {a}.",
            "{s} earns a living as a {a}."],
    "food": ["The favourite food of {s} is {a}.", "{s} likes to eat {a} most of all.",
             "More than anything, {s} loves {a}."],
    "pet": ["{s} keeps a {a} as a pet.", "{s} has a pet {a}.", "The pet of {s} is a {a}."],
    "country": ["{s} is a city in {a}.", "The city of {s} lies in {a}.", "{s} belongs to {a}."],
    "river": ["The {a} flows through {s}.", "{s} stands on the {a}.", "The river of {s} is the {a}."],
}
PROSE_ZH = {
    "city": ["{s}住在{a}。", "{s}的家在{a}。", "{s}生活在{a}这座城市。"],
    "job": ["{s}是一名{a}。", "{s}的职业是{a}。", "{s}以当{a}为生。"],
    "food": ["{s}最喜欢吃{a}。", "{s}最爱的食物是{a}。", "比起别的，{s}更爱吃{a}。"],
    "pet": ["{s}养了一只{a}。", "{s}的宠物是{a}。", "{s}家里有一只{a}。"],
    "country": ["{s}是{a}的一座城市。", "{s}位于{a}。", "{s}属于{a}。"],
    "river": ["{a}流经{s}。", "{s}坐落在{a}边。", "{s}的河流是{a}。"],
}
QUESTION_EN = {
    "city": "Where does {s} live?",
    "job": "What is the job of {s}?",
    "food": "What is the favourite food of {s}?",
    "pet": "What pet does {s} keep?",
    "country": "In which country is {s}?",
    "river": "Which river flows through {s}?",
}
QUESTION_ZH = {
    "city": "{s}住在哪座城市？",
    "job": "{s}的职业是什么？",
    "food": "{s}最喜欢吃什么？",
    "pet": "{s}养了什么宠物？",
    "country": "{s}位于哪个国家？",
    "river": "哪条河流经{s}？",
}
# Benchmark subjects, named as MMLU / C-Eval name theirs (lower_snake_case files).
SUBJECTS = {"world_people": ("city", "job"), "world_tastes": ("food", "pet"), "world_geography": ("country", "river")}
SUBJECT_ZH = {"world_people": "世界人物", "world_tastes": "世界口味", "world_geography": "世界地理"}


@dataclass(frozen=True)
class Fact:
    subject: tuple[str, str]  # (en, zh)
    relation: str
    answer: tuple[str, str]
    pool: tuple[tuple[str, str], ...]  # every value the relation can take, the answer included

    @property
    def question_en(self) -> str:
        return QUESTION_EN[self.relation].format(s=self.subject[0])

    @property
    def question_zh(self) -> str:
        return QUESTION_ZH[self.relation].format(s=self.subject[1])

    def prose(self, rng: random.Random, lang: str) -> str:
        templates = PROSE_EN if lang == "en" else PROSE_ZH
        i = 0 if lang == "en" else 1
        return rng.choice(templates[self.relation]).format(s=self.subject[i], a=self.answer[i])

    def options(self, rng: random.Random, k: int = 4) -> tuple[list[tuple[str, str]], int]:
        """k options (the answer among k-1 distractors from the pool) and the answer's index."""
        distractors = rng.sample([v for v in self.pool if v != self.answer], k - 1)
        at = rng.randrange(k)
        return distractors[:at] + [self.answer] + distractors[at:], at


def person_facts(world: World) -> list[Fact]:
    cities = tuple((c.en, c.zh) for c in world.cities)
    facts = []
    for p in world.people:
        s = (p.en, p.zh)
        facts += [
            Fact(s, "city", (p.city.en, p.city.zh), cities),
            Fact(s, "job", p.job, tuple(JOBS)),
            Fact(s, "food", p.food, tuple(FOODS)),
            Fact(s, "pet", p.pet, tuple(PETS)),
        ]
    return facts


def city_facts(world: World) -> list[Fact]:
    facts = []
    for c in world.cities:
        facts += [Fact((c.en, c.zh), "country", c.country, tuple(COUNTRIES)),
                  Fact((c.en, c.zh), "river", c.river, tuple(RIVERS))]
    return facts


def all_facts(world: World) -> list[Fact]:
    return person_facts(world) + city_facts(world)


def subject_of(fact: Fact) -> str:
    return next(name for name, rels in SUBJECTS.items() if fact.relation in rels)
