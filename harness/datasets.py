"""The real datasets the shipped matrices read: where each comes from, its licence, and the sha256 of every file the
committed results were measured on.

A matrix names such data as `dataset:NAME/SUB`: SUB inside the dataset's folder NAME of the data folder, which is
$HARNESS_DATA, else `../shared/data` beside the repository checkout (the team's machines). `dataset:.` is the data
folder itself (eval.safety reads advbench/ and xstest/ in it). Preflight (`harness validate`, `harness run`) checks
every catalogued file a matrix reads: missing or altered (another sha256) is an error naming the dataset, its
upstream source and licence; `harness data` lists the same per matrix.

A part is a file or a folder of CSVs (one file per subject). A folder's digest is the sha256 of the lines
`<sha256>  <name>` of its *.csv files, sorted by name (bytewise): `cd DIR && LC_ALL=C sha256sum *.csv | sha256sum`,
as ../shared/data/SOURCES.md records it.

    find("dialogsum").source()                 # 'cylnlp/dialogsum@848cc8c0...:DialogSum_Data/'
    state(find("mmlu").parts[0], data_root())  # 'ok', 'missing' or 'altered (sha256 ..., the results were ...)'
"""

from __future__ import annotations

import hashlib
import os
import posixpath
from dataclasses import dataclass
from pathlib import Path

from harness.paths import DATA_ENV as ENV
from harness.paths import data_root, sha256

PREFIX = "dataset:"
# How a `dataset:` reference is spelled in cell ids and result set keys: the path the shipped matrices (in matrices/)
# used before references existed, so their committed results keep their ids and a run resumes them.
ID_SPELLING = "../../shared/data"
SAFETY_READS = ("advbench/harmful_behaviors.csv", "xstest/xstest_prompts.csv")  # harness.evals.safety.prompt_sets


@dataclass(frozen=True)
class Part:
    path: str  # relative to the data folder: a file, or a folder whose *.csv files are digested together
    sha256: str
    source: str = ""  # upstream repo@commit:path when it differs from the dataset's own


@dataclass(frozen=True)
class Dataset:
    name: str  # also its folder in the data folder
    title: str
    repo: str
    commit: str
    path: str  # inside the repo (a zip and the folder inside it, where the files came from a zip)
    licence: str
    parts: tuple[Part, ...]
    hub: str = ""  # the same data on the Hugging Face hub, in the hub's own layout (not byte-identical)

    def source(self) -> str:
        return f"{self.repo}@{self.commit}:{self.path}"


LF = "hiyouga/LLaMA-Factory"
CATALOG = (
    Dataset("dialogsum", "DialogSum dialogue summarization (dev: 1 reference, test: 3)", "cylnlp/dialogsum",
            "848cc8c05e0a04def79326539de827f1b28786a0", "DialogSum_Data/", "CC BY-NC-SA 4.0",
            (Part("dialogsum/dialogsum.test.jsonl",
                  "6de36eca7e7b9b10975fd5ea3f47391df172d8b3c15d03d84d763cbaab015fda"),
             Part("dialogsum/dialogsum.dev.jsonl",
                  "436721e0a3571eef7072964f80e042fb151d8c6178db1a688ce8f803bbf0a13f"))),
    Dataset("wikitext-2", "WikiText-2, tokenised <unk> version (test.txt, valid.txt renamed wiki.*.tokens)",
            "pytorch/examples", "77f55b912142e11fcfdf5b530231fb9c52f181e8", "word_language_model/data/wikitext-2/",
            "CC BY-SA 3.0",
            (Part("wikitext-2/wiki.test.tokens", "d790b833ef8cf03a90db7bf1271b7520b83c45ce07ba3c1a9699df81e239eca0"),
             Part("wikitext-2/wiki.valid.tokens", "f0737ed31fc1329026e95cb8b98e19c2a182c39c240ab909dc31abf2f8af58e8")),
            hub="Salesforce/wikitext (wikitext-2-v1)"),
    Dataset("mmlu", "MMLU (hendrycks CSVs, 57 subjects)", LF, "465ee8119aa489a41bee0b01b3c105a2f3dd137f",
            "evaluation/mmlu/mmlu.zip -> data/{test,dev}/", "MIT",
            (Part("mmlu/test", "1f0cec94ac3236778d79014c784c2b2e1e7d5a14bc3a332891c982e24f70d533"),
             Part("mmlu/dev", "00d0c3e2d00d9fd4f38ecf888d1053a39eb455ce7c5903e6626973e5a246fa5c")),
            hub="cais/mmlu"),
    Dataset("ceval", "C-Eval (52 subjects, val and dev)", LF, "465ee8119aa489a41bee0b01b3c105a2f3dd137f",
            "evaluation/ceval/ceval.zip -> {val,dev}/", "CC BY-NC-SA 4.0",
            (Part("ceval/val", "133a2a82dee39fca64de0a7fb833c92df8cabbec82a08cf223cb53e6fe3e65d7"),
             Part("ceval/dev", "0fe4f1eee024854baf6aad6a3da9c33aae4a1c01ca8798cdeda98b7a36d49de2"),
             Part("ceval/subject_mapping.json", "671018e9d1ac8e51e8c3ea02574c89be8ff7660ebe67c8ec31b30b9035e064a7",
                  "hkust-nlp/ceval@cba65ae93bcf189149ced9f66ae0c958201faed9:subject_mapping.json (MIT)")),
            hub="ceval/ceval-exam"),
    Dataset("cmmlu", "CMMLU (67 subjects, test and dev)", "haonan-li/CMMLU",
            "d6e7b716d8ac694f38969a6c0407437d1fded799",
            "data/{test,dev}/", "CC BY-NC-SA 4.0",
            (Part("cmmlu/test", "24517db8ab276a0098c68ee2d8d1e8aecd16b75da572d1a0725ed0a966d79ac3"),
             Part("cmmlu/dev", "3c82ab0263039ab57c8d3a9b5e9fd5922151a42766928a435dd4a90937df74af")),
            hub="haonan-li/cmmlu"),
    Dataset("gsm8k", "GSM8K grade-school math (test, train)", "openai/grade-school-math",
            "3101c7d5072418e28b9008a6636bde82a006892c", "grade_school_math/data/", "MIT",
            (Part("gsm8k/test.jsonl", "3730d312f6e3440559ace48831e51066acaca737f6eabec99bccb9e4b3c39d14"),
             Part("gsm8k/train.jsonl", "17f347dc51477c50d4efb83959dbb7c56297aba886e5544ee2aaed3024813465")),
            hub="openai/gsm8k (main)"),
    Dataset("advbench", "AdvBench harmful behaviors (520 goals)", "MarcosElFlamenco/llm_defense_testing",
            "39c2f85cc9fc04b2beabd5897da4c9921f99388f", "data/advbench/harmful_behaviors.csv", "MIT",
            (Part("advbench/harmful_behaviors.csv",
                  "6cd1a5c63c07610d7eb67307772ee5606017ee950b5770ab288a2c487489d3e1"),)),
    Dataset("xstest", "XSTest v2 prompts (250 safe, 200 unsafe)", "paul-rottger/exaggerated-safety",
            "d7bb5bd738c1fcbc36edd83d5e7d1b71a3e2d84d", "xstest_prompts.csv", "CC BY 4.0",
            (Part("xstest/xstest_prompts.csv", "11783fb294ed017473ee53c207d71f2161c7672c8d0b037501e78387f801cb5a"),)),
    Dataset("llamafactory_sft", "LLaMA-Factory's Alpaca-format English demo set (999 rows)", LF,
            "ff6d4d12eeb035d6ce06805a5733dd7b29f2ac30", "data/alpaca_en_demo.json",
            "CC BY-NC 4.0 (Alpaca-family content; the repo is Apache-2.0)",
            (Part("llamafactory_sft/alpaca_en_demo.json",
                  "bcc37c64db1a739a0789a1b81f251146fcf4459f903474bc9e3c21bbb5628318"),)),
)


def find(name: str) -> Dataset:
    for d in CATALOG:
        if d.name == name:
            return d
    raise KeyError(f"no catalogued dataset {name!r} (known: {', '.join(d.name for d in CATALOG)})")


def where_from() -> str:
    """How the data folder was chosen, for messages."""
    return f"${ENV}" if os.environ.get(ENV) else f"${ENV} unset: ../shared/data beside the repository"


def relative(value: str) -> str:
    """`dataset:mmlu/` -> 'mmlu'; `dataset:.` -> '.': the reference's path inside the data folder."""
    return posixpath.normpath(value[len(PREFIX):] or ".")


def id_spelling(value):
    """A `dataset:` reference as cell ids spell it (any other value unchanged)."""
    if isinstance(value, str) and value.startswith(PREFIX):
        return posixpath.normpath(f"{ID_SPELLING}/{relative(value)}")
    return value


def canonical(cell: dict) -> dict:
    """A cell's model_dump with its `dataset:` references in their id spelling (a copy; idempotent)."""
    out = dict(cell)
    if isinstance(out.get("data"), dict):
        out["data"] = {k: id_spelling(v) if k in ("path", "validation", "test") else v for k, v in out["data"].items()}
    if isinstance(ev := out.get("eval"), dict):
        ev = {k: id_spelling(v) if k in ("safety", "general_text", "refusal_judge") else v for k, v in ev.items()}
        if isinstance(bench := ev.get("benchmarks"), dict) and bench.get("tasks"):
            ev["benchmarks"] = {**bench, "tasks": [{**t, "data": id_spelling(t.get("data"))} for t in bench["tasks"]]}
        out["eval"] = ev
    return out


def references(spec) -> list[tuple[str, str]]:
    """(key, value) of every `dataset:` reference in a matrix spec (or in its valid parts: a dict of sections)."""
    parts = spec if isinstance(spec, dict) else {"data": spec.data, "eval": spec.eval}
    found = []
    if data := parts.get("data"):
        found += [(f"data.{k}", getattr(data, k)) for k in ("path", "validation", "test")]
    if ev := parts.get("eval"):
        found += [(f"eval.{k}", getattr(ev, k)) for k in ("general_text", "safety", "refusal_judge")]
        for i, t in enumerate(ev.benchmarks.tasks if ev.benchmarks else []):
            found.append((f"eval.benchmarks.tasks[{i}].data", t.data))
    return [(k, v) for k, v in found if isinstance(v, str) and v.startswith(PREFIX)]


def needs(key: str, value: str) -> list[tuple[Dataset, Part]]:
    """The catalogued parts a reference reads: those at or under its path (eval.safety: the two files it reads)."""
    rel = relative(value)
    reads = [posixpath.normpath(f"{rel}/{f}") for f in SAFETY_READS] if key == "eval.safety" else [rel]
    return [(d, p) for d in CATALOG for p in d.parts
            if any(r in (".", p.path) or p.path.startswith(f"{r}/") for r in reads)]


def folder_digest(folder: Path) -> str:
    lines = "".join(f"{sha256(f)}  {f.name}\n" for f in sorted(folder.glob("*.csv"), key=lambda f: f.name.encode()))
    return hashlib.sha256(lines.encode()).hexdigest()


def state(part: Part, root: Path) -> str:
    """'ok', 'missing', or 'altered (...)' for one part under the data folder `root`."""
    where = root / part.path
    if where.is_dir():
        got = folder_digest(where)
    elif where.is_file():
        got = sha256(where)
    else:
        return "missing"
    if got == part.sha256:
        return "ok"
    return f"altered (sha256 {got[:12]}…, the results were measured on {part.sha256[:12]}…)"


def problem(key: str, d: Dataset, bad: list[tuple[Part, str]], root: Path) -> str:
    """One message for a reference whose dataset has missing or altered parts."""
    missing = [p.path for p, s in bad if s == "missing"]
    altered = [f"{p.path} {s.removeprefix('altered ')}" for p, s in bad if s != "missing"]
    what = "; ".join(([f"missing {', '.join(missing)}"] if missing else []) + [f"altered {a}" for a in altered])
    extra = "".join(f"; {p.path} comes from {p.source}" for p, _ in bad if p.source)
    hub = f"; the hub has it as {d.hub} in another layout (a benchmark without data: reads lm-eval's hub task)" \
        if d.hub and key.startswith("eval.benchmarks") else ""
    return (f"{key}: dataset {d.name}: {what}, in the data folder {root} ({where_from()}). {d.title}: from "
            f"{d.source()}, licence {d.licence}{extra}{hub}. Put the original there, or set {ENV} to a folder holding "
            f"{d.name}/; `harness data` lists what each matrix needs")


def check(spec) -> tuple[list[str], set[str]]:
    """(problems, the references they concern): every catalogued part a matrix reads, present and unaltered."""
    root, problems, bad_refs = data_root(), [], set()
    for key, value in references(spec):
        by_dataset: dict[str, list] = {}
        for d, p in needs(key, value):
            if (s := state(p, root)) != "ok":
                by_dataset.setdefault(d.name, []).append((p, s))
        for name, bad in by_dataset.items():
            problems.append(problem(key, find(name), bad, root))
            bad_refs.add(value)
    return problems, bad_refs


def matrix_needs(path: Path) -> list[tuple[Dataset, list[Part]]]:
    """The catalogued datasets a matrix file reads, each with its parts (the valid sections of a broken matrix)."""
    from harness.config import read_matrix, validate_matrix

    _, parts, _ = validate_matrix(read_matrix(path), str(path))
    found: dict[str, list[Part]] = {}
    for key, value in references(parts):
        for d, p in needs(key, value):
            if p not in found.setdefault(d.name, []):
                found[d.name].append(p)
    return [(find(name), [p for p in find(name).parts if p in ps]) for name, ps in found.items()]  # catalog order


def _lines(d: Dataset, parts: list[Part], root: Path) -> tuple[list[str], bool]:
    states = [(p, state(p, root)) for p in parts]
    bad = [f"{'MISSING' if s == 'missing' else 'ALTERED'} {p.path}" + ("" if s == "missing" else f" {s[8:]}")
           for p, s in states if s != "ok"]
    head = f"ok, {len(parts)} verified (sha256)" if not bad else "; ".join(bad)
    src = "".join(f"; {p.path}: {p.source}" for p in parts if p.source)
    return [f"  {d.name:<17}{head}", f"  {'':<17}{d.title}", f"  {'':<17}from {d.source()}{src}",
            f"  {'':<17}licence {d.licence}" + (f"; hub: {d.hub}" if d.hub else "")], not bad


def listing(paths: list[Path], rest: bool = False) -> tuple[str, bool]:
    """`harness data`: per matrix, the datasets it needs, where each comes from, present and verified or not.
    `rest`: also the catalogued datasets none of them reads. (text, every needed file present and unaltered)."""
    root, out, ok, used = data_root(), [], True, set()
    out.append(f"data folder: {root} ({where_from()})")
    for path in paths:
        needed = matrix_needs(path)
        out.append(f"{path}: " + (f"{len(needed)} dataset(s)" if needed else "no catalogued data (zoo or hub only)"))
        for d, parts in needed:
            lines, good = _lines(d, parts, root)
            out += lines
            ok &= good
            used.add(d.name)
    if rest and (others := [d for d in CATALOG if d.name not in used]):
        out.append("also catalogued, read by none of these matrices:")
        for d in others:
            out += _lines(d, list(d.parts), root)[0]
    if not ok:
        out.append(f"some files are missing or altered: put the originals in {root}, or set {ENV} to a folder "
                   "holding them (each dataset's folder by its name)")
    return "\n".join(out), ok
