"""Everything a matrix names, checked before the first cell starts: every problem in one round, no weights loaded.

`harness validate`, `run --dry-run` and `run` call `check` before anything else. Each file is
read once, through the readers the cells use, so what passes here parses there too:

- the schema (harness/config.py); each section that is valid on its own is checked further,
  so a wrong key elsewhere does not hide a missing file;
- models: the zoo name, local folder or cached hub id resolves, config.json loads and names a
  causal LM transformers knows, safetensors weights are there, the tokenizer loads;
  a model without a chat template (a pretrained base) cannot take `data.template: chat`, and
  with `auto` a warning says that training and the suites prompt it with alpaca;
  a zoo model under licence terms (gemma-3-270m) is named with `accept_terms: true`;
- strategies: registered, every swept parameter typed and in range (harness/matrix.py);
- data: every split read and parsed (file:line errors), tokenised with each model's tokenizer;
- catalogued real data (`dataset:` references, harness/datasets.py): each file there and unaltered (its sha256),
  else an error naming the dataset, where it comes from, its licence and HARNESS_DATA;
- eval: every suite listed has its data; benchmark, safety and general-text files parsed; lm-eval
  hub task names known; the refusal classifier registered and its judge folder loadable.

Errors are requests that cannot work (ConfigError, exit 2). Warnings are requests that run but
may not do what was meant: a strategy's default learning rate on a model far from the sizes it
is meant for, mostly truncated training data, eval data that no listed suite uses. `harness run`
keeps the warnings in results/<matrix>/preflight.json, and the leaderboard's header shows them.

    spec, warnings = check(Path("matrices/smoke.yaml"))   # or ConfigError listing every problem
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness import datasets
from harness.config import ConfigError, MatrixSpec, ModelSpec, load_matrix, read_matrix, validate_matrix
from harness.paths import MATRICES, ZOO, resolve_data, resolve_model
from harness.suites import SUITES

FILE = "preflight.json"  # results/<matrix>/preflight.json: the warnings of the run that wrote the results
DEFAULTS_MEANT_FOR = (0.5e9, 8e9)  # parameters of the models the strategies' default learning rates suit
FAR = 5  # a model this many times smaller or larger than that range gets a warning about a default LR
TRUNCATED_WARN = 0.1  # share of training examples cut (or dropped) at max_length above which to warn


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:300]


def check(path: Path, skip_bad_rows: bool = False, model: str | None = None) -> tuple[MatrixSpec, list[str]]:
    """The validated spec and the warnings; ConfigError listing every problem of the matrix at once.

    `model` (harness run --model) replaces the matrix's `models:`; a local path is taken from the working folder."""
    path = Path(path)
    source, root = str(path), path.resolve().parent
    raw = read_matrix(path)
    if model:
        raw["models"] = [str(Path(model).resolve()) if Path(model).exists() else model]
        source += f" (models: {model}, from --model)"
    spec, parts, problems = validate_matrix(raw, source)
    if skip_bad_rows and "data" in parts:  # part of the data spec, so it is recorded in every cell and its id
        parts["data"] = parts["data"].model_copy(update={"skip_bad_rows": True})
    warnings: list[str] = []
    missing, bad_refs = datasets.check(parts)  # before the readers, which would only say "no such file"
    problems += [f"{source}: {m}" for m in missing]
    models = {}
    for i, model in enumerate(parts.get("models", [])):
        try:
            if loaded := _model(model, root):  # {}: obtained by `run` later, nothing to check it against yet
                models[model.id] = loaded
        except ConfigError as e:
            problems.append(f"{source}: models[{i}]: {e}")
        if terms := _unaccepted_terms(model):
            problems.append(f"{source}: models[{i}]: {terms}")
    if "models" in parts and "data" in parts:
        problems += _templates(parts["models"], models, parts["data"], parts.get("eval"), source, warnings)
    if "strategies" in parts:
        from harness.matrix import check_strategies

        problems += check_strategies(parts["strategies"], source)
    if "eval" in parts:
        problems += _eval(parts["eval"], root, source, bad_refs)
        warnings += _unused_eval_data(parts["eval"])
    if "data" in parts and not bad_refs & {parts["data"].path, parts["data"].validation, parts["data"].test}:
        problems += _data(parts["data"], parts.get("eval"), models, root, source, warnings)
    if {"strategies", "train"} <= parts.keys():
        warnings += _learning_rates(parts, models)
        problems += _distributed(parts, root, source)
    if problems:
        raise ConfigError("\n".join(problems))
    assert spec is not None  # no problems: the schema held
    if skip_bad_rows:
        spec = spec.model_copy(update={"data": parts["data"]})
    return spec, warnings


def _obtained_by_run(name: str, where: Path) -> bool:
    """A zoo model not fetched yet, or a GGUF file not converted yet: nothing to read until `run` obtains it."""
    from harness.catalog import ZOO_MODELS

    return where.suffix == ".gguf" and where.is_file() or name in ZOO_MODELS.names()


def _unaccepted_terms(model: ModelSpec) -> str | None:
    """Why a zoo model under licence terms (Gemma's) cannot be used without `accept_terms: true`; None if it can."""
    from harness.catalog import ZOO_MODELS

    if model.accept_terms or model.id not in ZOO_MODELS.names() or not (t := ZOO_MODELS.get(model.id).terms):
        return None
    return (f"{model.id} is under the {t.name} ({t.file}; {t.url or t.wheel.requirement}), which must be accepted "
            f"to use it: name it as {{id: {model.id}, accept_terms: true}} (`harness zoo fetch {model.id}` shows "
            "the terms' text)")


PROMPTED = ("perplexity", "task", "safety")  # suites rendering prompts with data.template (benchmarks: lm-eval's)


def _templates(specs, models: dict, data, ev, source: str, warnings: list[str]) -> list[str]:
    """A model without a chat template (a pretrained base): `data.template: chat` is refused; with `auto` the
    matrix's suites and training prompt it with alpaca, which a warning says."""
    from harness.catalog import ZOO_MODELS

    problems = []
    for i, model in enumerate(specs):
        if model.id in models:
            has = bool(models[model.id]["tok"].chat_template)
        elif model.id in ZOO_MODELS.names():  # not fetched yet: the entry says
            has = getattr(ZOO_MODELS.get(model.id), "chat_template", True)
        else:
            continue
        if has:
            continue
        if data.template == "chat":
            if model.id not in models:  # a loaded tokenizer's refusal comes from the data check (template.resolve)
                problems.append(f"{source}: data.template: 'chat', but models[{i}] ({model.id}) has no chat template "
                                "(a pretrained base model), so neither training nor the suites could prompt it; use "
                                "data.template alpaca or raw (auto picks alpaca for it)")
            continue
        if data.template != "auto":
            continue  # alpaca or raw, as the matrix says
        suites = [s for s in (ev.suites if ev else []) if s in PROMPTED]
        warnings.append(f"models[{i}] ({model.id}) has no chat template (a pretrained base model): training"
                        + (f" and the {', '.join(suites)} suite{'s' if len(suites) > 1 else ''}" if suites else "")
                        + " prompt it with the alpaca template (data.template auto; set raw for plain text)"
                        + ("; benchmarks use lm-eval's own prompts" if ev and "benchmarks" in ev.suites else ""))
    return problems


def _model(model: ModelSpec, root: Path) -> dict[str, Any]:
    """config and tokenizer of a model, read without its weights; ConfigError saying what is wrong."""
    from transformers import AutoConfig, AutoTokenizer

    where = resolve_model(model.id, root)
    folder = Path(where)
    if not folder.is_dir() and _obtained_by_run(model.id, folder):
        return {}  # `harness run` fetches or converts it before any cell (harness.models.prepare) and says why not
    if not folder.is_dir():
        if model.id.startswith((".", "/", "~")) or model.id.count("/") > 1 or Path(where).exists():
            raise ConfigError(f"{model.id!r}: no such model folder ({root / model.id})")
        try:
            config = AutoConfig.from_pretrained(model.id, trust_remote_code=model.trust_remote_code)
        except Exception as e:  # transformers raises OSError, ValueError, HTTP errors: all mean "not here"
            import os

            offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "false", "")
            raise ConfigError(
                f"{model.id!r} is not a zoo name ({', '.join(sorted(p.name for p in ZOO.iterdir() if p.is_dir()))}) "
                f"or a local folder (none at {root / model.id}), and as a hub id its config cannot be read"
                + ("; the hub is offline here (HF_HUB_OFFLINE=1) and the model is not in the local cache: download "
                   "it first (HF_HUB_OFFLINE=0) or point at a local folder" if offline else f" ({_first_line(e)})")
            ) from None
    else:
        config_file = folder / "config.json"
        if not config_file.is_file():
            empty = not any(folder.iterdir())
            raise ConfigError(f"{folder}: {'an empty folder' if empty else 'no config.json'}; expected a saved "
                              "model (config.json, *.safetensors, tokenizer files)")
        try:
            json.loads(config_file.read_text("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            line = f":{e.lineno}" if isinstance(e, json.JSONDecodeError) else ""
            raise ConfigError(f"{config_file}{line}: not valid JSON ({_first_line(e)})") from None
        try:
            config = AutoConfig.from_pretrained(where, trust_remote_code=model.trust_remote_code)
        except Exception as e:  # an unknown model_type is a ValueError or KeyError, depending on the version
            raise ConfigError(f"{config_file}: transformers cannot read this config ({_first_line(e)})") from None
        if not any(folder.glob("*.safetensors")):
            raise ConfigError(f"{folder}: no *.safetensors weights (the harness loads safetensors only, never "
                              "pickled .bin files; re-save the model with save_pretrained(safe_serialization=True))")
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

    remote = model.trust_remote_code and "AutoModelForCausalLM" in (getattr(config, "auto_map", None) or {})
    if type(config) not in MODEL_FOR_CAUSAL_LM_MAPPING and not remote:
        raise ConfigError(f"{where}: model_type {config.model_type!r} has no causal language model in transformers "
                          "(AutoModelForCausalLM); the harness fine-tunes decoder language models")
    try:
        tok = AutoTokenizer.from_pretrained(where, trust_remote_code=model.trust_remote_code)
    except Exception as e:
        raise ConfigError(f"{where}: the tokenizer cannot be loaded ({_first_line(e)})") from None
    if len(tok) < 2:  # transformers builds an empty tokenizer for a folder that has no tokenizer files
        raise ConfigError(f"{where}: no tokenizer files (tokenizer.json or the tokenizer's vocabulary)")
    return {"config": config, "tok": tok}


def _data(data, ev, models: dict, root: Path, source: str, warnings: list[str]) -> list[str]:
    """Every split read as the cells read it; the test/validation splits the suites need are non-empty."""
    from harness.data import load_split
    from harness.data.dataset import train_examples
    from harness.data.native import FormatError

    try:
        splits = {split: load_split(data, root, split) for split in ("train", "validation", "test")}
    except (FormatError, OSError, ValueError) as e:
        return [f"{source}: data: {e}"]
    problems = []
    suites = ev.suites if ev else []
    if "task" in suites and any("text" in ex for ex in splits["test"]):
        problems.append(f"{source}: eval.suites: the task suite scores replies against answers, but the data is "
                        "text-format (no answers); use alpaca, prompt_completion or chat data, or drop task")
    for split, suite in (("test", "task"), ("validation", "perplexity")):
        if suite in suites and not splits[split]:
            problems.append(f"{source}: data: the {split} split has no examples left, so the {suite} suite would "
                            "score nothing")
    for model_id, loaded in models.items():
        try:
            _, report = train_examples(data, loaded["tok"], root)
        except (FormatError, ValueError) as e:
            problems.append(f"{source}: data: with {model_id}'s tokenizer: {e}")
            continue
        t = report["tokenized"]
        total = t["examples"] + t["dropped_overlong"]
        cut = t["truncated"] + t["dropped_overlong"]
        if total and cut / total > TRUNCATED_WARN:
            how = {"drop": "dropped", "left": "truncated (the prompt's start is cut)",
                   "right": "truncated (the end is cut)"}[data.truncation]
            warnings.append(f"data: {cut} of {total} training examples ({cut / total:.0%}) are longer than "
                            f"data.max_length {data.max_length} tokens with {model_id}'s tokenizer and are {how}; "
                            "raise data.max_length to train on whole examples")
    return problems


def _eval(ev, root: Path, source: str, reported: set[str] = frozenset()) -> list[str]:
    """Each listed suite has its data, and every file it names parses with the reader its suite uses."""
    from harness.data.native import FormatError, read_documents
    from harness.evals import safety
    from harness.evals.lmeval_tasks import read_local

    problems = []
    for suite in ev.suites:
        if (key := SUITES[suite].data_key) and not getattr(ev, key):
            problems.append(f"{source}: eval.suites: lists {suite}, but the matrix names no data for it; add "
                            f"{SUITES[suite].needs}, or drop {suite} from eval.suites")

    def read(key: str, reader, value: str):
        if value in reported:  # a catalogued dataset found missing or altered: said once, with its source
            return
        where = resolve_data(value, root)
        if not where.exists():
            problems.append(f"{source}: {key}: no such file or folder: {value!r} ({where})")
            return
        try:
            reader(where)
        except (FormatError, OSError, ValueError) as e:  # ValueError: a file that is not UTF-8
            problems.append(f"{source}: {key}: {_first_line(e)}")

    if ev.benchmarks:
        for i, t in enumerate(ev.benchmarks.tasks):
            if t.data:
                read(f"eval.benchmarks.tasks[{i}].data", lambda d, task=t.task: read_local(task, d), t.data)
        if "benchmarks" in ev.suites:
            problems += _unknown_benchmarks(ev.benchmarks, source)
    if ev.safety:
        def prompts(folder: Path):
            harmful, benign = safety.prompt_sets(folder)
            if not harmful or not benign:
                raise FormatError(f"{folder}: no {'harmful (AdvBench goal)' if not harmful else 'safe (XSTest)'} "
                                  "prompts to score")

        read("eval.safety", prompts, ev.safety)
    if ev.general_text:
        read("eval.general_text", read_documents, ev.general_text)
    try:
        safety.CLASSIFIERS.get(ev.refusal_classifier)
    except KeyError as e:
        problems.append(f"{source}: eval.refusal_classifier: {e.args[0]}")
    if ev.refusal_judge:
        read("eval.refusal_judge", _judge_config, ev.refusal_judge)
    return problems


def _judge_config(folder: Path) -> None:
    from transformers import AutoConfig

    try:
        AutoConfig.from_pretrained(folder)
    except Exception as e:
        raise ValueError(f"{folder}: not a loadable classifier model ({_first_line(e)})") from None


def _unknown_benchmarks(benchmarks, source: str) -> list[str]:
    from harness.evals.benchmarks import unknown_hub_tasks

    return [f"{source}: eval.benchmarks.tasks[{i}].task: lm-eval has no task or group {name!r}"
            + (f" (did you mean {', '.join(close)}?)" if close else "")
            for i, name, close in unknown_hub_tasks(benchmarks)]


def _unused_eval_data(ev) -> list[str]:
    """Eval data the matrix names that no listed suite reads: a request that does nothing."""
    unused = [(key, suite) for key, suite in (("benchmarks", "benchmarks"), ("safety", "safety"),
                                              ("general_text", "perplexity")) if getattr(ev, key)
              and suite not in ev.suites]
    return [f"eval.{key} is set, but eval.suites leaves out {suite}, so it is not used" for key, suite in unused]


def _learning_rates(parts: dict, models: dict) -> list[str]:
    """A strategy's default learning rate on a model far from the sizes the default is meant for."""
    import strategies  # noqa: F401  (registers the built-ins)
    from strategies.base import STRATEGIES

    defaults = [(i, entry) for i, entry in enumerate(parts["strategies"])
                if not (entry.train and entry.train.learning_rate) and not parts["train"].learning_rate]
    if not defaults:  # the matrix chose every rate: no model needs building
        return []
    low, high = DEFAULTS_MEANT_FOR
    sizes = {m: _parameters(loaded["config"]) for m, loaded in models.items()}
    far = {m: n for m, n in sizes.items() if n is not None and not low / FAR <= n <= high * FAR}
    out = []
    for i, entry in defaults:
        try:
            lr = STRATEGIES.get(entry.name).defaults.learning_rate
        except KeyError:
            continue  # reported as an unknown strategy
        for model_id, n in far.items():
            small = n < low
            hint = ""
            if small and (tiny := _smoke_rates().get(entry.name)):
                hint = f" (matrices/smoke.yaml trains {entry.name} on the 3.4M-parameter tiny world at {tiny:g})"
            out.append(f"strategies[{i}] ({entry.name}): learning rate {lr:g} is the strategy's default, meant for "
                       f"{low / 1e9:g}B-{high / 1e9:g}B-parameter models; {model_id} has {_size(n)} parameters and "
                       f"usually needs a {'larger' if small else 'smaller'} rate{hint}; set "
                       f"strategies[{i}].train.learning_rate"
                       + ("" if parts.get("tuning") else ", or sweep it with tuning.lr_multipliers"))
    return out


def _parameters(config) -> int | None:
    """Parameter count of the model a config describes, built on the meta device (no memory, no weights)."""
    import torch
    from transformers import AutoModelForCausalLM

    try:
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config)
    except Exception:  # a size that cannot be known gives no warning rather than a wrong one
        return None
    return sum(p.numel() for p in model.parameters())


def _size(n: int) -> str:
    return f"{n / 1e9:.1f}B" if n >= 1e9 else f"{n / 1e6:.1f}M"


def _smoke_rates() -> dict[str, float]:
    """strategy -> the learning rate the shipped smoke matrix probed for the tiny world."""
    try:
        spec = load_matrix(MATRICES / "smoke.yaml")
    except (ConfigError, OSError):
        return {}
    return {e.name: e.train.learning_rate for e in spec.strategies if e.train and e.train.learning_rate}


def save(results_dir: Path, matrix: str, warnings: list[str]) -> None:
    """results/<matrix>/preflight.json, written atomically: the warnings the leaderboard header repeats."""
    from harness.store import write_json_atomic

    write_json_atomic(Path(results_dir) / FILE, {
        "matrix": matrix, "checked_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "warnings": warnings})


# Strategies that cannot train under FSDP2 here, with the reason (harness/distributed.py; tests/test_fsdp.py).
FSDP_REFUSED = {
    "qlora": "QLoRA's 4-bit weights (bitsandbytes) cannot be sharded by FSDP2 on CPU",
}


def _distributed(parts: dict, root: Path, source: str) -> list[str]:
    """train.distributed combinations that cannot work, each with its reason (matrix-wide and per strategy)."""
    import torch

    problems, seen = [], set()
    base = parts["train"]
    for i, entry in enumerate(parts["strategies"]):
        train = base.model_copy(update={k: getattr(entry.train, k) for k in entry.train.model_fields_set}
                                if entry.train else {})
        where = "train.distributed" if not (entry.train and "distributed" in entry.train.model_fields_set) else \
            f"strategies[{i}].train.distributed"
        d = train.distributed
        if d is None or d.backend == "ddp" and train.world < 2:
            continue
        said = []
        if train.world < 2:
            said.append(f"backend {d.backend} shards over several processes: set train.nproc_per_node (or "
                        "distributed.nnodes) so that there are at least 2")
        if d.backend == "deepspeed":
            from harness import distributed  # imports transformers: only where a matrix asks for deepspeed

            said.append(distributed.deepspeed_problem(d.deepspeed.config, root))
            if not distributed.deepspeed_installed():
                said.append("backend deepspeed: the deepspeed package is not installed here (pip install deepspeed)")
        if d.backend == "fsdp":
            if entry.name in FSDP_REFUSED and not (entry.name == "qlora" and torch.cuda.is_available()):
                said.append(f"backend fsdp cannot train {entry.name}: {FSDP_REFUSED[entry.name]}")
            if d.fsdp.cpu_offload and not torch.cuda.is_available():
                said.append("fsdp.cpu_offload moves GPU memory to the CPU; there is no CUDA device here")
            if (parts.get("tuning") and parts["tuning"].lr_multipliers):
                said.append("backend fsdp: the learning-rate search (tuning.lr_multipliers) is not supported yet")
            ev = parts.get("eval")
            if ev is not None and ev.checkpoints:
                said.append("backend fsdp: eval.checkpoints (snapshots while training) are not supported yet")
        for why in filter(None, said):
            if (where, why) not in seen:
                seen.add((where, why))
                problems.append(f"{source}: {where}: {why}")
    return problems
