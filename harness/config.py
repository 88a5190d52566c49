"""Typed matrix specification, validated at the edge: YAML in, `MatrixSpec` out, or one `ConfigError`.

A schema only: types, ranges and the consistency of keys among themselves. Whether what the
keys name exists and reads (models, data and benchmark files, strategies, lm-eval tasks) is
harness/preflight.py's job. Every problem in a file is reported at once, each as
`file: key.path: what was expected`.

    spec = load_matrix(Path("matrices/smoke.yaml"))
    spec.strategies[1].name, spec.budget.tokens
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from harness.suites import SUITE_NAMES, SUITES

TASK_METRICS = ("exact_match", "accuracy", "rouge", "bleu", "chrf")
MAX_NAME = 100  # characters of a matrix name, which names its results folder (filesystems allow 255 bytes)
SEED_LIMIT = 2**32  # numpy's generators (and so transformers.set_seed) take 0 <= seed < 2**32


class ConfigError(ValueError):
    """A matrix file is malformed; the message names the file and every offending key."""


class _Spec(BaseModel):
    # strict: `tokens: true` or `tokens: "5"` is an error, not 1 or 5 (YAML's true/false are booleans)
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class ModelSpec(_Spec):
    id: str = Field(description="zoo name (tiny-world), local folder, or hub id (Qwen/Qwen2.5-0.5B)")
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    trust_remote_code: bool = False  # off unless a matrix asks for it by name
    accept_terms: bool = False  # accept a zoo model's licence terms (gemma-3-270m); preflight refuses without

    @model_serializer(mode="wrap")
    def _dump(self, handler):
        """accept_terms is left out of the dump while off, so every other cell keeps the id it had before the key."""
        out = handler(self)
        if not self.accept_terms:
            out.pop("accept_terms", None)
        return out


Carve = str | PositiveFloat | None  # a split: its file/hub split name, a fraction (<1) or count of train, or None


class DataSpec(_Spec):
    """Training data and how it becomes tokens; every cell of a matrix shares it (see harness/data)."""

    path: str | None = None  # json/jsonl/csv/parquet file, folder with train/validation/test files, or zoo:NAME/TASK
    hub: str | None = None  # hub dataset id, read with datasets.load_dataset(hub, hub_config, split=split)
    hub_config: str | None = None
    split: str = "train"  # the training split: hub split name, or file stem inside a folder
    validation: Carve = None  # None: the source's own "validation" split, else 10% carved from train
    test: Carve = None  # None: the source's own "test" split, else 10% carved from train
    tuning: PositiveFloat | None = None  # the LR search's split: share/count of train (0.1 with `tuning:`)
    format: Literal["auto", "alpaca", "prompt_completion", "chat", "text"] = "auto"  # auto: from the keys
    columns: dict[str, str | list[str]] = Field(default_factory=dict)  # our field -> your column, {output: summary}
    # output may list columns: a row's first one present is trained on, all present are scored as references
    instruction: str | None = None  # a fixed instruction for rows that hold only the input (alpaca layout)
    group: str | None = None  # column naming the group an item was drawn with (tiny world: person); see stats.py
    template: Literal["auto", "chat", "alpaca", "raw"] = "auto"  # auto: the tokenizer's chat template if any
    max_length: PositiveInt = 256  # tokens per example
    truncation: Literal["left", "right", "drop"] = "left"  # left: cut the prompt's start; drop: skip the example
    loss_on: Literal["completion", "all"] = "completion"  # completion: prompt tokens masked from the loss
    samples: PositiveInt | None = None  # at most this many training examples (a fixed, seed-free choice)
    packing: bool = False  # concatenate each batch into one row, attention kept within each example
    dedup: Literal["none", "exact", "near"] = "near"  # near: same text after case/space/punctuation folding
    contamination_n: PositiveInt = 13  # n-gram length of the train/eval overlap check (GPT-3 used 13)
    drop_contaminated: bool = False  # leave eval items that overlap the training data out of scoring
    skip_bad_rows: bool = False  # skip (and count) malformed rows instead of stopping at the first

    @model_validator(mode="after")
    def _one_source(self):
        if (self.path is None) == (self.hub is None):
            raise ValueError("give exactly one of data.path (a local file or folder) and data.hub (a hub id)")
        if several := sorted(k for k, v in self.columns.items() if isinstance(v, list) and k != "output"):
            raise ValueError(f"data.columns: only output may list several columns (its references), not {several}")
        if any(v == [] for v in self.columns.values()):
            raise ValueError("data.columns: a list of columns must name at least one")
        return self


class BudgetSpec(_Spec):
    tokens: PositiveInt = Field(description="non-padding training tokens every cell consumes, exactly")
    max_seconds: PositiveFloat | None = None  # wall-clock cap; a cell that hits it is over_budget
    max_memory_mb: PositiveFloat | None = None  # cap on peak memory above the pre-load baseline (see memory.py)


class FsdpSpec(_Spec):
    """torch's FSDP2 (`fully_shard` on each decoder layer, then the root); see harness/distributed.py."""

    reshard_after_forward: bool = True  # free the gathered layer after forward (ZeRO-3); False keeps it (ZeRO-2)
    activation_checkpointing: bool = False  # recompute each layer's activations in backward (non-reentrant)
    cpu_offload: bool = False  # parameters, gradients and optimizer states in CPU memory (CUDA only)
    mixed_precision: Literal["none", "bf16"] = "none"  # bf16: layers compute and all-gather in bf16, reduce in fp32
    # ranks each parameter is sharded over; None: every rank (full shard). Fewer: hybrid shard (HSDP), sharded within
    # groups of this many ranks and replicated across them (nproc_per_node: shard within a node, replicate across)
    shard_size: PositiveInt | None = None


class DeepSpeedSpec(_Spec):
    config: dict[str, Any] | str  # a DeepSpeed config (or a JSON file, relative to the matrix) given to Trainer


class DistributedSpec(_Spec):
    """How a cell trains on several processes: which backend, and on how many nodes (torchrun's rendezvous)."""

    backend: Literal["ddp", "fsdp", "deepspeed"] = "ddp"  # ddp: full copies on every rank (train.nproc_per_node)
    nnodes: PositiveInt = 1  # >1: torchrun --nnodes with a c10d rendezvous at rdzv_endpoint (same command per node)
    rdzv_endpoint: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._\-\[\]:]+:[0-9]+$")  # host:port
    fsdp: FsdpSpec = FsdpSpec()
    deepspeed: DeepSpeedSpec | None = None

    @model_validator(mode="after")
    def _consistent(self):
        if self.nnodes > 1 and not self.rdzv_endpoint:
            raise ValueError("distributed.nnodes > 1 needs distributed.rdzv_endpoint (host:port of node 0)")
        if self.backend == "deepspeed" and self.deepspeed is None:
            raise ValueError("distributed.backend deepspeed needs distributed.deepspeed.config (a dict or JSON file)")
        if self.backend != "deepspeed" and self.deepspeed is not None:
            raise ValueError(f"distributed.deepspeed is read by backend deepspeed only, not {self.backend}")
        if self.backend != "fsdp" and self.fsdp != FsdpSpec():
            raise ValueError(f"distributed.fsdp options are read by backend fsdp only, not {self.backend}")
        return self


class TrainSpec(_Spec):
    batch_size: PositiveInt = 8
    learning_rate: PositiveFloat | None = None  # None: each strategy's own default
    weight_decay: float = Field(default=0.0, ge=0)
    warmup_steps: int = Field(default=0, ge=0)
    lr_scheduler: Literal["constant", "linear", "cosine"] = "linear"
    bf16: bool | None = None  # bf16 autocast; None: on CUDA devices that support it, never on CPU
    nproc_per_node: PositiveInt = 1  # >1: the cell trains under torchrun DDP (gloo on CPU, nccl on GPU)
    # None (left out of the dump, so cells of older matrices keep their ids): DDP as nproc_per_node says
    distributed: DistributedSpec | None = None

    @model_validator(mode="before")
    @classmethod
    def _nproc_alias(cls, raw: Any) -> Any:
        """distributed.nproc_per_node is an alias of train.nproc_per_node, kept in one place (the latter)."""
        if isinstance(raw, dict) and isinstance(raw.get("distributed"), dict) and "nproc_per_node" in raw[
                "distributed"]:
            dist = dict(raw["distributed"])
            n = dist.pop("nproc_per_node")
            if "nproc_per_node" in raw and raw["nproc_per_node"] != n:
                raise ValueError(f"train.nproc_per_node {raw['nproc_per_node']} and distributed.nproc_per_node {n} "
                                 "differ; give one")
            raw = {**raw, "nproc_per_node": n, "distributed": dist}
        return raw

    @model_serializer(mode="wrap")
    def _dump(self, handler):
        """distributed is left out of the dump while unset, so every cell of an older matrix keeps its id."""
        out = handler(self)
        if self.distributed is None:
            out.pop("distributed", None)
        return out

    @model_validator(mode="after")
    def _shard_size_divides_the_world(self):
        size = self.distributed.fsdp.shard_size if self.distributed else None
        if size and (size > self.world or self.world % size):
            raise ValueError(f"distributed.fsdp.shard_size {size} must divide the world size {self.world} "
                             "(nproc_per_node x nnodes): the ranks form world / shard_size replicas of a shard group")
        return self

    @property
    def backend(self) -> str:
        return self.distributed.backend if self.distributed else "ddp"

    @property
    def shard_group(self) -> int:
        """Ranks a parameter is divided over: fsdp.shard_size (hybrid shard) or, sharding, every rank."""
        d = self.distributed
        return (d.fsdp.shard_size or self.world) if d and d.backend == "fsdp" else self.world

    @property
    def world(self) -> int:
        """Processes the cell trains on: nproc_per_node on each of nnodes."""
        return self.nproc_per_node * (self.distributed.nnodes if self.distributed else 1)


class StrategyEntry(_Spec):
    name: str
    params: dict[str, Any] = Field(default_factory=dict)  # a list value sweeps that parameter
    train: TrainSpec | None = None  # per-strategy overrides of the matrix's train section

    @classmethod
    def coerce(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value


LOCAL_LAYOUTS = ("mmlu", "ceval-valid", "cmmlu", "gsm8k")  # lm-eval tasks whose native file layouts `data:` reads
MC_TASKS = ("mmlu", "ceval-valid", "cmmlu")  # the multiple-choice benchmarks with a letter and a cloze formulation
SHORT_NAMES = {"mmlu": "mmlu", "ceval-valid": "ceval", "gsm8k": "gsm8k"}


class BenchmarkSpec(_Spec):
    task: str = Field(description="lm-eval task or group name: mmlu, ceval-valid, cmmlu, gsm8k, or any lm-eval task")
    data: str | None = None  # local folder in the task's native layout (zoo:tiny-world/mmlu); None: the hub
    formulation: Literal["letter", "cloze"] | None = None  # mmlu / ceval-valid / cmmlu only; None: letter (lm-eval's)
    num_fewshot: NonNegativeInt | None = None  # None: the task's own default (mmlu 0, gsm8k 5)
    limit: PositiveInt | None = None  # docs per lm-eval task (its --limit; per subject); None: eval.limit
    gen_kwargs: dict[str, str | int | float | bool] | None = None  # generate_until tasks, e.g. {max_gen_toks: 64}
    name: str = Field(default="", pattern=r"^([a-z0-9_]+)?$")  # metric prefix; "" -> mmlu, mmlu_cloze, ceval, ...

    @model_validator(mode="after")
    def _check(self):
        if self.formulation and self.task not in MC_TASKS:
            raise ValueError(f"formulation applies to {MC_TASKS} only, not {self.task!r}")
        if self.data and self.task not in LOCAL_LAYOUTS:
            raise ValueError(f"data: local files are read for {LOCAL_LAYOUTS} only; leave data out to run "
                             f"{self.task!r} from the hub")
        if self.formulation == "cloze" and not self.data and self.task != "mmlu":  # the hub's: mmlu_continuation
            raise ValueError(f"lm-eval has no cloze {self.task} on the hub; give data: a folder in its native layout")
        if not self.name:
            base = SHORT_NAMES.get(self.task) or "".join(c if c.isalnum() else "_" for c in self.task.lower())
            object.__setattr__(self, "name", base + ("_cloze" if self.formulation == "cloze" else ""))
        return self


class BenchmarksSpec(_Spec):
    tasks: list[BenchmarkSpec] = Field(min_length=1)
    batch_size: PositiveInt = 8
    add_bos_token: bool | None = None  # lm-eval's HFLM option; None: the tokenizer's own default
    sanity_docs: NonNegativeInt = 8  # docs re-scored at batch sizes 1 and 8 (log-likelihood tasks); 0: off

    @field_validator("tasks")
    @classmethod
    def _unique(cls, tasks: list[BenchmarkSpec]) -> list[BenchmarkSpec]:
        names = [t.name for t in tasks]
        if dups := sorted({n for n in names if names.count(n) > 1}):
            raise ValueError(f"two benchmarks report under the same name {dups}; give one a distinct `name:`")
        return tasks


class TradeoffSpec(_Spec):
    """The forgetting an operating point may cost: the best task score among a cell's points within both limits."""

    general_ppl_increase: PositiveFloat = 0.05  # ppl_general at most 5% above the base model's
    benchmark_drop: float = Field(default=0.01, ge=0)  # each benchmark accuracy at most 1 point below the base's


def _fractions(v: list[float], low_open: bool, high_open: bool, what: str) -> list[float]:
    for x in v:
        if x <= 0 or x > 1 or (high_open and x == 1) or (not low_open and x == 0):
            high = "1)" if high_open else "1]"
            raise ValueError(f"{x} is not a {what} in (0, {high}")
    if len(set(v)) != len(v):
        raise ValueError(f"{v} repeats a value")
    return sorted(v)


class EvalSpec(_Spec):
    suites: list[Literal[SUITE_NAMES]] = None  # type: ignore[valid-type,assignment]  # None: every suite with data
    safety: str | None = None  # folder holding advbench/ and xstest/ CSVs
    general_text: str | None = None  # JSONL with a "text" field: the forgetting perplexity corpus
    benchmarks: BenchmarksSpec | None = None  # lm-eval tasks run on the in-memory model (the `benchmarks` suite)
    max_new_tokens: PositiveInt = 64
    batch_size: PositiveInt = 16  # rows per forward (scoring, generation) on CPU; on CUDA chosen from free memory
    limit: PositiveInt | None = None  # at most this many items per suite (quick looks, not reports)
    ppl_window: PositiveInt = 512  # tokens per perplexity window (capped at the model's context)
    ppl_stride: PositiveInt | None = None  # tokens a window advances; None: half the window
    stop: list[str] = Field(default_factory=list)  # generated replies are cut at the first of these
    task_metrics: list[Literal[TASK_METRICS]] = Field(  # type: ignore[valid-type]
        default_factory=lambda: ["exact_match", "rouge", "bleu", "chrf"])
    task_answer: Literal["text", "gsm"] = "text"  # gsm: exact match/accuracy compare the `#### n` answers
    refusal_classifier: str = "prefix"  # harness.evals.safety.CLASSIFIERS: prefix (start-anchored), keyword, judge
    refusal_judge: str | None = None  # local sequence-classification model folder for the judge classifier
    coherence_max_ppl: PositiveFloat | None = 10.0  # ceiling on a refusal/helpful reply's base-model per-token PPL
    on_topic_min: float = Field(default=0.5, ge=0, le=1)  # share of the prompt's content words a helpful reply uses
    # Points besides the end (harness.points): the point suites run at these fractions of the token budget
    # (snapshots taken inside the one training run) and at base + a·(tuned - base) for each a of interpolate.
    checkpoints: list[float] | None = None  # e.g. [0.25, 0.5, 0.75]; 1 is the end, measured anyway
    interpolate: list[float] | None = None  # e.g. [0.25, 0.5, 0.75]; 0 is the base, 1 the tuned model
    point_suites: list[Literal[SUITE_NAMES]] | None = None  # type: ignore[valid-type]  # None: every suite of the cell
    tradeoff: TradeoffSpec | None = None  # the operating point's forgetting limits; None: TradeoffSpec()'s
    inference: bool = True  # time prompt throughput and per-token latency after the suites (evals.inference)
    bf16: bool | None = None  # bf16 autocast of the suites' forwards; None: on CUDA devices that support it, never CPU
    # reuse a base model's evaluation from harness.basecache; excluded from the dump: it changes no number
    base_cache: bool = Field(default=True, exclude=True)
    # the training-noise prior (a noise.json from `harness noise`, or its folder; relative to the matrix file) for
    # the leaderboard's takeaways and the dry-run's power lines; excluded from the dump: cell ids do not change
    noise_from: str | None = Field(default=None, exclude=True)
    # the smallest difference worth detecting, in each headline metric's own units: the dry-run says how many items
    # or seeds detect it at 80% power; excluded from the dump
    target_effect: PositiveFloat | None = Field(default=None, exclude=True)

    @field_validator("checkpoints")
    @classmethod
    def _checkpoints(cls, v):
        return v if v is None else _fractions(v, low_open=True, high_open=False, what="fraction of the budget")

    @field_validator("interpolate")
    @classmethod
    def _interpolate(cls, v):
        if v is not None and any(x in (0, 1) for x in v):
            raise ValueError(f"{v}: 0 is the base model and 1 the tuned one, both measured anyway; "
                             "list the weights between, e.g. [0.25, 0.5, 0.75]")
        return v if v is None else _fractions(v, low_open=True, high_open=True, what="interpolation weight")

    @model_validator(mode="after")
    def _consistent(self):
        if self.suites is None:  # a suite whose data the matrix does not name would measure nothing
            object.__setattr__(self, "suites", [s for s in SUITE_NAMES if not SUITES[s].data_key
                                                or getattr(self, SUITES[s].data_key)])
        if self.ppl_stride and self.ppl_stride >= self.ppl_window:
            raise ValueError(f"ppl_stride ({self.ppl_stride}) must be below ppl_window ({self.ppl_window}), "
                             "or the first token of each later window goes unscored")
        if self.point_suites and (off := [x for x in self.point_suites if x not in self.suites]):
            raise ValueError(f"point_suites {off} are not among the cell's suites {self.suites}")
        if self.refusal_classifier == "judge" and not self.refusal_judge:
            raise ValueError("refusal_classifier 'judge' needs refusal_judge: a local classifier model folder")
        return self


class TuningSpec(_Spec):
    """A learning-rate sweep per strategy; each trial gets the full matrix budget and is scored on data.tuning.

    objective `loss`: the lowest mean NLL per completion token of the tuning split wins.
    `loss_within_forgetting`: the same, among trials whose perplexity on `general_text` (a corpus kept apart
    from eval.general_text, which ppl_general reports) is at most (1 + max_general_ppl_increase) x the base
    model's; when none is, the trial that forgets least.
    """

    lr_multipliers: list[PositiveFloat] = Field(min_length=1, description="factors applied to each cell's LR")
    objective: Literal["loss", "loss_within_forgetting"] = "loss"
    max_general_ppl_increase: PositiveFloat | None = None  # 0.1: general PPL at most 10% above the base model's
    general_text: str | None = None  # the forgetting objective's corpus (JSONL text or plain text)
    # extra trials past an end of the grid while the chosen trial sits at that end (harness.tuning); 0: the grid only
    max_extensions: NonNegativeInt = 2
    # `first`: the search runs on the matrix's first seed and the other seeds train once at the rate it chose, so
    # their spread is training noise at one rate; `each`: every seed searches (the spread includes the choice)
    seeds: Literal["first", "each"] = "first"

    @model_validator(mode="after")
    def _forgetting_needs_a_ceiling(self):
        if self.objective == "loss_within_forgetting" and (self.max_general_ppl_increase is None
                                                            or self.general_text is None):
            raise ValueError("objective loss_within_forgetting needs max_general_ppl_increase and general_text "
                             "(a general corpus other than eval.general_text)")
        return self


def _folder_name(name: str) -> str:
    """The name becomes results/<name>: one plain path component, never a way out of results/."""
    if name in (".", "..") or len(name) > MAX_NAME:
        raise ValueError(f"{name[:40]!r}{'...' if len(name) > 40 else ''} cannot name a results folder: give one "
                         f"folder name of at most {MAX_NAME} characters, not '.' or '..'")
    return name


def _models(v: Any) -> Any:
    v = v if isinstance(v, list) else [v]
    if not v:
        raise ValueError("name at least one model: a zoo name (tiny-world), a local folder or a hub id")
    return [{"id": m} if isinstance(m, str) else m for m in v]


def _strategies(v: Any) -> Any:
    if v == []:
        raise ValueError("name at least one strategy (`harness strategies` lists them)")
    return [StrategyEntry.coerce(s) for s in v] if isinstance(v, list) else v


def _seed(v: int) -> int:
    if not 0 <= v < SEED_LIMIT:
        raise ValueError(f"{v} is not a seed numpy and torch accept (0 <= seed < 2**32)")
    return v


class MatrixSpec(_Spec):
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]+$"), AfterValidator(_folder_name)]
    models: Annotated[list[ModelSpec], BeforeValidator(_models)]
    data: DataSpec
    budget: BudgetSpec
    train: TrainSpec = TrainSpec()
    strategies: Annotated[list[StrategyEntry], BeforeValidator(_strategies)]
    seeds: list[Annotated[int, AfterValidator(_seed)]] = Field(default_factory=lambda: [0], min_length=1)
    eval: EvalSpec = EvalSpec()
    tuning: TuningSpec | None = None

    @model_validator(mode="before")
    @classmethod
    def _tuning_split(cls, raw: Any) -> Any:
        """A matrix that tunes carves its tuning split (10%) from train unless data.tuning says otherwise."""
        if isinstance(raw, dict) and raw.get("tuning") and isinstance(raw.get("data"), dict):
            raw = {**raw, "data": {"tuning": 0.1, **raw["data"]}}
        return raw

    @model_validator(mode="after")
    def _tuning_apart(self):
        t = self.tuning
        if t and t.general_text and t.general_text == self.eval.general_text:
            raise ValueError("tuning.general_text must differ from eval.general_text: ppl_general is reported")
        return self

NUMBER_ERRORS = ("int_type", "float_type", "int_parsing", "float_parsing")


def _where(loc: tuple) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".") or "(top level)"


def format_errors(source: str, err: ValidationError) -> list[str]:
    out = []
    for e in err.errors():
        loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        msg = "unknown key (not allowed here)" if e["type"] == "extra_forbidden" else e["msg"].removeprefix(
            "Value error, ")
        if isinstance(e.get("input"), bool) and e["type"] in NUMBER_ERRORS:
            msg += f", not the boolean {str(e['input']).lower()}"
        out.append(f"{source}: {_where(loc)}: {msg}")
    return out


def _decode(path: Path, data: bytes) -> str:
    """The file's text; a file in another encoding is named with the encoding it looks like."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in data[:4096]:
        raise ConfigError(f"{path}: the file is UTF-16 (or UTF-32), expected UTF-8; save it as UTF-8")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: not UTF-8 (byte 0x{data[e.start]:02x}; Latin-1 or Windows-1252?); "
                          f"save it as UTF-8") from None


def read_matrix(path: Path) -> dict:
    """The matrix file as a mapping of keys; ConfigError when it is missing, not UTF-8, not YAML or not a mapping."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such matrix file")
    try:
        raw = yaml.safe_load(_decode(path, path.read_bytes()))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "?"
        raise ConfigError(f"{path}: {where}: not valid YAML ({getattr(e, 'problem', e)})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of keys (name, models, data, budget, strategies, ...)")
    raw.setdefault("name", path.stem)
    return raw


def validate_matrix(raw: dict, source: str) -> tuple[MatrixSpec | None, dict[str, Any], list[str]]:
    """The spec (None when any key is wrong), each top-level section that is valid on its own, and the problems.

    The valid sections let later checks run on what is right while the rest is reported, so
    every problem of a file comes in one round.
    """
    try:
        spec = MatrixSpec.model_validate(raw)
        return spec, dict(spec), []
    except ValidationError as e:
        problems = format_errors(source, e)
        bad = {err["loc"][0] for err in e.errors() if err["loc"]}
    sections = {}
    for name, field in MatrixSpec.model_fields.items():
        if name in bad:
            continue
        if name not in raw:
            if field.is_required():
                continue
            sections[name] = field.get_default(call_default_factory=True)
            continue
        kind = Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation
        sections[name] = TypeAdapter(kind).validate_python(raw[name], strict=True)
    return None, sections, problems


def load_matrix(path: Path) -> MatrixSpec:
    """Read and validate a matrix YAML; raise ConfigError listing every problem of the schema."""
    spec, _, problems = validate_matrix(read_matrix(path), str(path))
    if problems:
        raise ConfigError("\n".join(problems))
    return spec
