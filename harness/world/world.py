"""The tiny world: a seeded, bilingual set of invented people and cities.

Everything the tiny base model knows, every benchmark item it is scored on and the
fine-tuning task all derive from one `World` built here, so a seed reproduces the lot.

    world = make_world(seed=0)
    world.people[0].en, world.people[0].city.zh
"""

from __future__ import annotations

import random
from dataclasses import dataclass

# Attribute values are (English, Chinese) pairs. Small closed sets keep the world small
# enough for a few-million-parameter model to memorise on a CPU in well under an hour.
JOBS = [
    ("baker", "面包师"), ("teacher", "教师"), ("doctor", "医生"), ("farmer", "农民"),
    ("painter", "画家"), ("pilot", "飞行员"), ("sailor", "水手"), ("tailor", "裁缝"),
    ("miner", "矿工"), ("singer", "歌手"), ("potter", "陶艺师"), ("writer", "作家"),
]
FOODS = [
    ("apples", "苹果"), ("rice", "米饭"), ("noodles", "面条"), ("cheese", "奶酪"),
    ("fish", "鱼"), ("honey", "蜂蜜"), ("plums", "李子"), ("soup", "汤"),
    ("dumplings", "饺子"), ("mangoes", "芒果"), ("tofu", "豆腐"), ("grapes", "葡萄"),
]
PETS = [
    ("cat", "猫"), ("dog", "狗"), ("parrot", "鹦鹉"), ("rabbit", "兔子"),
    ("turtle", "乌龟"), ("goldfish", "金鱼"), ("hamster", "仓鼠"), ("horse", "马"),
    ("goat", "山羊"), ("owl", "猫头鹰"), ("frog", "青蛙"), ("snake", "蛇"),
]
COUNTRIES = [
    ("Veldora", "维尔多拉"), ("Quessia", "奎西亚"), ("Marovia", "马罗维亚"), ("Tundrel", "屯德尔"),
    ("Oskaria", "奥斯卡里亚"), ("Bellmora", "贝尔莫拉"),
]
RIVERS = [
    ("Amber River", "琥珀河"), ("Silver River", "银河"), ("Reed River", "芦苇河"), ("Stone River", "石河"),
    ("Willow River", "柳河"), ("Crane River", "鹤河"), ("Pine River", "松河"), ("Cloud River", "云河"),
]

# English syllable -> Chinese transliteration character, so a city's two names agree.
_SYLLABLES = {
    "ka": "卡", "ro": "罗", "mi": "米", "ta": "塔", "ve": "维", "lo": "洛", "na": "纳", "be": "贝",
    "so": "索", "ri": "里", "da": "达", "ke": "克", "ma": "马", "to": "托", "li": "利", "su": "苏",
    "po": "波", "ne": "内", "fa": "法", "go": "戈", "zi": "齐", "ha": "哈", "mo": "莫", "te": "特",
}
_CITY_SUFFIX = [("", ""), ("ville", "维尔"), ("holm", "霍姆"), ("burg", "堡"), ("port", "港")]
_EN_FIRST = ["Ada", "Bren", "Cato", "Dara", "Elin", "Fenn", "Gita", "Hale", "Ines", "Jory", "Kira", "Lund",
             "Mira", "Nils", "Oona", "Pell", "Quin", "Rosa", "Sven", "Tova", "Ulla", "Vash", "Wren", "Yara"]
_EN_LAST = ["Tolven", "Marsh", "Okoro", "Brandt", "Castell", "Dunmore", "Ferro", "Galway", "Holt", "Ivers",
            "Jansen", "Keller", "Lorne", "Mercer", "Norwood", "Pryce", "Quill", "Rowan", "Sable", "Thorne"]
_ZH_SURNAME = list("王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗")
_ZH_GIVEN = list("明华丽强静敏军杰芳涛伟娜磊洋勇艳超秀霞刚平辉玲飞鹏燕宇晨")


@dataclass(frozen=True)
class City:
    en: str
    zh: str
    country: tuple[str, str]
    river: tuple[str, str]


@dataclass(frozen=True)
class Person:
    en: str
    zh: str
    city: City
    job: tuple[str, str]
    food: tuple[str, str]
    pet: tuple[str, str]


@dataclass(frozen=True)
class World:
    seed: int
    cities: tuple[City, ...]
    people: tuple[Person, ...]


def _city_names(rng: random.Random, n: int) -> list[tuple[str, str]]:
    sylls = list(_SYLLABLES)
    names: dict[str, str] = {}
    while len(names) < n:
        parts = rng.sample(sylls, rng.choice([2, 3]))
        suffix_en, suffix_zh = rng.choice(_CITY_SUFFIX)
        en = "".join(parts).capitalize() + suffix_en
        names.setdefault(en, "".join(_SYLLABLES[p] for p in parts) + suffix_zh)
    return list(names.items())


def _unique_pairs(rng: random.Random, a: list[str], b: list[str], n: int, sep: str) -> list[str]:
    combos = [x + sep + y for x in a for y in b]
    return rng.sample(combos, n)


def make_world(seed: int = 0, n_people: int = 120, n_cities: int = 24) -> World:
    """Build the world deterministically from `seed` (same seed, same world, on any machine)."""
    rng = random.Random(seed)
    cities = tuple(
        City(en, zh, rng.choice(COUNTRIES), rng.choice(RIVERS)) for en, zh in _city_names(rng, n_cities)
    )
    en_names = _unique_pairs(rng, _EN_FIRST, _EN_LAST, n_people, " ")
    zh_given = [g1 + g2 for g1 in _ZH_GIVEN for g2 in _ZH_GIVEN if g1 != g2]
    zh_names = _unique_pairs(rng, _ZH_SURNAME, zh_given, n_people, "")
    people = tuple(
        Person(en, zh, rng.choice(cities), rng.choice(JOBS), rng.choice(FOODS), rng.choice(PETS))
        for en, zh in zip(en_names, zh_names)
    )
    return World(seed=seed, cities=cities, people=people)
