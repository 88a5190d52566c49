"""lm-eval task configs that run lm-eval's own MMLU, C-Eval, CMMLU and GSM8K on local files in their native layouts.

Each subject's config `include:`s lm-eval's own YAML for it (prompt, few-shot split, metrics)
and overrides only where the data comes from. MMLU, C-Eval and CMMLU CSVs are read by our
loaders (exact strings, `file:line` errors; pandas would turn a choice "1.50" into 1.5) and
written as JSONL in the record layout of the hub datasets lm-eval's tasks expect (cais/mmlu,
ceval/ceval-exam, haonan-li/cmmlu); GSM8K JSONL already is openai/gsm8k's layout and is read
in place. The folder is keyed by the data's bytes and lm-eval's version, so every cell of a
matrix, and lm-eval's own CLI (`--include_path FOLDER --tasks NAME`), read the very same configs.

    folder, name = write_local_task("mmlu", "cloze", Path("data/mmlu"), "mmlu_cloze")
    # -> (~/.cache/harness/lm-eval-tasks/mmlu_cloze-<key>, "harness_mmlu_cloze")
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from harness.config import LOCAL_LAYOUTS
from harness.data.native import MC_LAYOUTS, FormatError, MCItem, read_gsm8k

LAYOUT = 1  # bump when the generated configs change, so cached folders are rebuilt


def lm_eval_tasks_dir() -> Path:
    import lm_eval

    return Path(lm_eval.__file__).parent / "tasks"


def cache_root() -> Path:
    return Path(os.environ.get("HARNESS_CACHE") or Path.home() / ".cache" / "harness") / "lm-eval-tasks"


def write_local_task(task: str, formulation: str | None, data: Path, name: str,
                     drop: frozenset[str] = frozenset()) -> tuple[Path, str]:
    """Write (once) the configs running lm-eval's `task` on the native files under `data`.

    `drop`: contamination keys (harness.data.hygiene.item_key) of scored items to leave out,
    when a matrix sets data.drop_contaminated; few-shot splits are kept whole.

    Returns the folder to pass as lm-eval's include path and the task or group name to run.
    """
    data = Path(data).resolve()
    if task not in LOCAL_LAYOUTS:
        raise FormatError(f"{data}: lm-eval task {task!r} has no local-file layout here; use one of {LOCAL_LAYOUTS}")
    files = sorted(p for p in data.rglob("*") if p.is_file() and p.suffix in (".csv", ".jsonl", ".json"))
    import lm_eval

    key = hashlib.sha256(json.dumps([LAYOUT, lm_eval.__version__, str(lm_eval_tasks_dir()), task, formulation,
                                     name, str(data), sorted(drop)]).encode())
    for p in files:
        key.update(p.relative_to(data).as_posix().encode() + b"\0" + p.read_bytes())
    folder = cache_root() / f"{name}-{key.hexdigest()[:16]}"
    if not folder.is_dir():
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=_mkdir(cache_root())))
        # configs name their files by the final folder's path: the folder is renamed into place when complete
        build = {"mmlu": _mmlu, "gsm8k": _gsm8k}.get(task) or functools.partial(_chinese, task)
        build(data, (tmp, folder), name, formulation, _kept(drop))
        try:
            tmp.rename(folder)  # atomic: a concurrent cell either sees the whole folder or builds its own
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
    return folder, f"harness_{name}"


def read_local(task: str, data: Path) -> dict[str, list]:
    """The items of every split `write_local_task` reads under `data`, by split (FormatError names file and line)."""
    data = Path(data)
    if task == "gsm8k":
        out = {split: read_gsm8k(data / f"{split}.jsonl") for split in ("test", "train")
               if (data / f"{split}.jsonl").is_file()}
        if "test" not in out:
            raise FormatError(f"{data}/test.jsonl: no such file (GSM8K layout: test.jsonl [, train.jsonl])")
        return out
    reader, scored, layout = MC_LAYOUTS[task]
    if not (data / scored).is_dir():  # said first: another benchmark's folder fails here, not in its files
        raise FormatError(f"{data}/{scored}: no such folder ({layout})")
    return {split: reader(data, split) for split in (scored, "dev") if (data / split).is_dir()}


def _kept(drop: frozenset[str]):
    """Predicate on a scored item: False for the contaminated ones the matrix asked to leave out."""
    if not drop:
        return lambda item: True
    from harness.data.dataset import item_text
    from harness.data.hygiene import item_key

    return lambda item: item_key(item_text(item)) not in drop


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _write_jsonl(out: tuple[Path, Path], rel: str, rows: list[dict]) -> str:
    path = out[0] / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return str(out[1] / rel)


def _write_yaml(path: Path, cfg: dict) -> None:
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False, width=10**6), encoding="utf-8")


def _data_source(files: dict[str, str], out: tuple[Path, Path]) -> dict:
    """The only keys a config overrides: local JSONL files, with the datasets cache kept beside them."""
    return {"dataset_path": "json", "dataset_name": None,
            "dataset_kwargs": {"data_files": files, "cache_dir": str(out[1] / "hf-datasets")}}


def _by_subject(items: list[MCItem]) -> dict[str, list[MCItem]]:
    out: dict[str, list[MCItem]] = {}
    for it in items:
        out.setdefault(it.subject, []).append(it)
    return out


def _subject_tasks(out: tuple[Path, Path], name: str, splits: dict[str, dict[str, list[dict]]],
                   includes: dict[str, Path], descriptions: dict[str, str], extra: dict, metrics: list[str]) -> None:
    """One config per subject (data files overridden) and a group over them, weighted by size as lm-eval's."""
    tasks = []
    for subject in sorted(next(iter(splits.values()))):
        task = f"harness_{name}_{subject}"
        files = {split: _write_jsonl(out, f"data/{subject}_{split}.jsonl", rows[subject])
                 for split, rows in splits.items() if subject in rows}
        cfg = {"include": str(includes[subject]), "task": task, "task_alias": subject, "tag": [],
               **_data_source(files, out)}
        if subject in descriptions:  # a subject lm-eval does not ship: its description, made as lm-eval makes them
            cfg["description"] = descriptions[subject]
        _write_yaml(out[0] / f"{task}.yaml", {**cfg, **extra})
        tasks.append(task)
    _write_yaml(out[0] / f"harness_{name}.yaml", {
        "group": f"harness_{name}", "task": tasks, "metadata": {"version": LAYOUT},
        "aggregate_metric_list": [{"metric": m, "aggregation": "mean", "weight_by_size": True} for m in metrics]})


def _mmlu(data: Path, out: tuple[Path, Path], name: str, formulation: str | None, keep) -> None:
    variant, template, header = (("continuation", "_continuation_template_yaml", "The following are questions")
                                 if formulation == "cloze" else
                                 ("default", "_default_template_yaml", "The following are multiple choice questions"))
    root = lm_eval_tasks_dir() / "mmlu" / variant
    splits = {split: {s: [{"question": it.question, "subject": s, "choices": list(it.choices), "answer": it.answer}
                          for it in items] for s, items in _by_subject([it for it in read
                                                            if split != "test" or keep(it)]).items()}
              for split, read in read_local("mmlu", data).items()}
    includes, descriptions = {}, {}
    for s in splits["test"]:
        own = root / f"mmlu_{s}.yaml"
        includes[s] = own if own.is_file() else root / template
        if not own.is_file():
            descriptions[s] = f"{header} (with answers) about {' '.join(s.split('_'))}.\n\n"
    metrics = ["acc", "acc_norm"] if formulation == "cloze" else ["acc"]
    _subject_tasks(out, name, splits, includes, descriptions, {}, metrics)


@dataclass(frozen=True)
class _Chinese:
    """What differs between lm-eval's C-Eval and CMMLU, which share a prompt (question, options A-D, 答案：)."""

    folder: str  # lm-eval's tasks/<folder>: <prefix><subject>.yaml per subject, each including `template`
    prefix: str
    template: str
    question: str  # the hub records' question and answer keys (the options are A..D in both)
    answer: str
    description: str  # lm-eval's subject header, {} the subject's Chinese name
    ids: bool  # the hub records carry an `id` (ceval/ceval-exam's do)

    def cloze(self) -> dict:
        """The cloze form, which lm-eval ships for neither: each option's text scored after the question, as its
        mmlu_continuation does for MMLU (OLMES's formulation for small models)."""
        return {"doc_to_text": f"{{{{{self.question}.strip()}}}}\n答案：", "doc_to_choice": "{{[A, B, C, D]}}"}


CHINESE = {"ceval-valid": _Chinese("ceval", "ceval-valid_", "_default_ceval_yaml", "question", "answer",
                                   "以下是中国关于{}的单项选择题，请选出其中的正确答案。\n\n", ids=True),
           "cmmlu": _Chinese("cmmlu", "cmmlu_", "_default_template_yaml", "Question", "Answer",
                             "以下是关于{}的单项选择题，请直接给出正确答案的选项。\n\n", ids=False)}


def _chinese(task: str, data: Path, out: tuple[Path, Path], name: str, formulation: str | None, keep) -> None:
    """C-Eval or CMMLU: one code path, so the two stay lm-eval's in the same way (its YAMLs, its descriptions)."""
    spec, scored = CHINESE[task], MC_LAYOUTS[task][1]
    root = lm_eval_tasks_dir() / spec.folder
    splits = {split: {s: [{**({"id": i} if spec.ids else {}), spec.question: it.question,
                           **dict(zip("ABCD", it.choices)), spec.answer: "ABCD"[it.answer]}
                          for i, it in enumerate(items)]
                      for s, items in _by_subject([it for it in read if split != scored or keep(it)]).items()}
              for split, read in read_local(task, data).items()}
    mapping = data / "subject_mapping.json"  # C-Eval's own file: subject -> [English, Chinese, category]
    zh = {k: v[1] for k, v in json.loads(mapping.read_text("utf-8")).items()} if mapping.is_file() else {}
    includes, descriptions = {}, {}
    for s in splits[scored]:
        own = root / f"{spec.prefix}{s}.yaml"
        includes[s] = own if own.is_file() else root / spec.template
        if not own.is_file():
            descriptions[s] = spec.description.format(zh.get(s, " ".join(s.split("_"))))
    _subject_tasks(out, name, splits, includes, descriptions, spec.cloze() if formulation == "cloze" else {},
                   ["acc", "acc_norm"])


def _gsm8k(data: Path, out: tuple[Path, Path], name: str, formulation: str | None, keep) -> None:
    read = read_local("gsm8k", data)  # file:line errors before lm-eval sees the files
    files = {split: data / f"{split}.jsonl" for split in read}
    paths = {split: str(path) for split, path in files.items()}
    for split, path in files.items():
        items = read[split]
        if split == "test" and not all(keep(it) for it in items):  # read in place unless items are left out
            rows = [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]
            paths[split] = _write_jsonl(out, "data/test.jsonl", [r for r, it in zip(rows, items) if keep(it)])
    cfg = {"include": str(lm_eval_tasks_dir() / "gsm8k" / "gsm8k.yaml"), "task": f"harness_{name}", "tag": [],
           **_data_source(paths, out)}
    if "train" not in files:  # few-shot examples then come from the test split, never the item itself
        cfg.update(training_split=None, fewshot_split="test")
    _write_yaml(out[0] / f"harness_{name}.yaml", cfg)
