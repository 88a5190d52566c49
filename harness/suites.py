"""The eval suites and the metrics they report: one table of each, read by every module that needs them.

A leaf: it imports nothing of harness, so the schema (config.py), the store, preflight, the evals and the
reports can all read it without importing one another.

    SUITES["safety"].data_key        # "safety": the eval key that names the suite's data
    describe("ppl_general").general  # True: its change against the base model is forgetting
    describe("mmlu_acc").chance      # 0.25
    is_bpb("ppl_general_bpb")        # True: bits per byte, tokenizer-independent
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Suite:
    name: str
    data_key: str | None  # the eval key naming its data (None: it reads the training data's splits)
    needs: str  # what to add to a matrix that lists the suite without its data
    prefixes: tuple[str, ...]  # its metric names start with one of these (benchmarks: each task's own name)


SUITES = {s.name: s for s in (
    Suite("perplexity", None, "", ("ppl_",)),
    Suite("task", None, "", ("task_",)),
    Suite("benchmarks", "benchmarks", "eval.benchmarks (tasks to run)", ()),
    Suite("safety", "safety", "eval.safety (a folder with advbench/ and xstest/ CSVs)", ("refusal_", "helpful_")),
)}
SUITE_NAMES = tuple(SUITES)


@dataclass(frozen=True)
class Metric:
    label: str
    higher_is_better: bool
    fmt: str = "{:.3f}"
    suite: str = "benchmarks"
    general: bool = False  # a general-ability score: its drop against the base model is forgetting
    corpus: str = ""  # a corpus metric ("bleu", "chrf"): its deltas re-score both sides' summed item statistics
    chance: float | None = None  # what guessing scores (1 / options): a column at chance says nothing
    help: str = ""  # one line for the leaderboard's glossary


def _bench(label: str, help: str, chance: float | None = 0.25) -> Metric:
    return Metric(label, True, general=True, chance=chance, help=help)


# benchmarks (lm-eval's tasks): <name>_<lm-eval metric>[_<filter>]; cloze = each option's text scored. The tiny
# world's and the real MMLU, C-Eval and CMMLU have 4 options.
METRICS = {
    "ppl_in_domain": Metric("PPL in-domain", False, "{:.2f}", "perplexity",
                            help="perplexity of the validation split's answer tokens (exp of the mean NLL per token)"),
    "ppl_general": Metric("PPL general", False, "{:.2f}", "perplexity", general=True,
                          help="perplexity of every token of the general text: the forgetting proxy"),
    "ppl_in_domain_bpb": Metric("bits/byte in-domain", False, "{:.3f}", "perplexity",
                                help="bits per UTF-8 byte of the validation answers' text (special tokens left "
                                     "out): comparable across tokenizers, unlike per-token PPL"),
    "ppl_general_bpb": Metric("bits/byte general", False, "{:.3f}", "perplexity", general=True,
                              help="bits per UTF-8 byte of the general text: the forgetting proxy across "
                                   "tokenizers (a base-model swap gates on it)"),
    "task_exact_match": Metric("task EM", True, suite="task", help="share of test replies equal to a reference"),
    "task_accuracy": Metric("task accuracy", True, suite="task",
                            help="share of test replies whose label matches the reference's"),
    "task_rouge_1": Metric("task ROUGE-1", True, suite="task",
                           help="ROUGE-1 F1 of each reply against its reference (by character for Chinese)"),
    "task_rouge_2": Metric("task ROUGE-2", True, suite="task", help="ROUGE-2 F1 of each reply against its reference"),
    "task_rouge_l": Metric("task ROUGE-L", True, suite="task",
                           help="ROUGE-L F1 (longest common subsequence) of each reply against its reference"),
    "task_bleu": Metric("task BLEU", True, "{:.1f}", "task", corpus="bleu",
                        help="corpus BLEU of the replies, 0-100 (sacrebleu)"),
    "task_chrf": Metric("task chrF", True, "{:.1f}", "task", corpus="chrf",
                        help="corpus chrF of the replies, 0-100 (sacrebleu)"),
    "mmlu_acc": _bench("MMLU acc", "lm-eval MMLU in the letter form (\" A\"..\" D\" scored): accuracy"),
    "mmlu_cloze_acc": _bench("MMLU acc (cloze)",
                             "lm-eval MMLU in the cloze form (each option's text scored): accuracy"),
    "mmlu_cloze_acc_norm": _bench("MMLU acc_norm (cloze)",
                                  "MMLU cloze, option log-likelihoods normalised by length: accuracy"),
    "ceval_acc": _bench("C-Eval acc", "lm-eval C-Eval (valid) in the letter form: accuracy"),
    "ceval_acc_norm": _bench("C-Eval acc_norm", "C-Eval letter form, normalised by length: accuracy"),
    "ceval_cloze_acc": _bench("C-Eval acc (cloze)", "C-Eval in the cloze form: accuracy"),
    "ceval_cloze_acc_norm": _bench("C-Eval acc_norm (cloze)", "C-Eval cloze, normalised by length: accuracy"),
    "cmmlu_acc": _bench("CMMLU acc", "lm-eval CMMLU (test) in the letter form: accuracy"),
    "cmmlu_acc_norm": _bench("CMMLU acc_norm", "CMMLU letter form, normalised by length: accuracy"),
    "cmmlu_cloze_acc": _bench("CMMLU acc (cloze)", "CMMLU in the cloze form: accuracy"),
    "cmmlu_cloze_acc_norm": _bench("CMMLU acc_norm (cloze)", "CMMLU cloze, normalised by length: accuracy"),
    "gsm8k_exact_match_strict_match": _bench("GSM8K EM (strict)", "lm-eval GSM8K: the `#### n` answer equals the "
                                             "reference", chance=None),
    "gsm8k_exact_match_flexible_extract": _bench("GSM8K EM (flexible)", "lm-eval GSM8K: the last number of the reply "
                                                 "equals the reference", chance=None),
    "refusal_harmful": Metric("refusal harmful", True, suite="safety",
                              help="share of harmful prompts (AdvBench layout) refused: higher is safer"),
    "refusal_benign": Metric("over-refusal benign", False, suite="safety",
                             help="share of benign look-alikes (XSTest layout) refused: lower is more helpful"),
    "helpful_benign": Metric("helpful benign", True, suite="safety",
                             help="share of benign look-alikes answered: not refused, coherent and on topic"),
    "refusal_harmful_keyword": Metric("refusal harmful (AdvBench keyword)", True, suite="safety",
                                      help="share of harmful prompts refused by AdvBench's keyword rule"),
}


def is_bpb(name: str) -> bool:
    """A bits-per-byte metric (`<perplexity metric>_bpb`): items [nll_sums, byte_counts], value sum NLL / (ln 2 *
    sum bytes); it does not depend on the tokenizer, unlike the per-token perplexity it accompanies."""
    return name.startswith("ppl") and name.endswith("_bpb")


def is_per_token(name: str) -> bool:
    """A per-token perplexity metric: comparable only within one tokenizer, averaged over seeds and given training
    noise on the log scale (bits per byte, already a log-likelihood per byte, stays on its own scale)."""
    return name.startswith("ppl") and not is_bpb(name)


def suite_of(name: str) -> str:
    """The suite a metric name belongs to, by the suites' prefixes; other names are lm-eval tasks' (benchmarks)."""
    if name in METRICS:
        return METRICS[name].suite
    return next((s.name for s in SUITES.values() if name.startswith(s.prefixes)), "benchmarks")


def describe(name: str) -> Metric:
    """The metric's meaning. Names only known at run time are a suite's variants (refusal_harmful_judge: read as
    refusal_harmful) or the benchmarks suite's other lm-eval tasks (arc_easy_acc, ...): general abilities, so their
    drop against the base model counts as forgetting."""
    if name in METRICS:
        return METRICS[name]
    suite = suite_of(name)
    if suite != "benchmarks" and (stem := max((k for k in METRICS if name.startswith(f"{k}_")), key=len, default="")):
        m = METRICS[stem]
        return Metric(f"{m.label} ({name[len(stem) + 1:]})", m.higher_is_better, m.fmt, suite, m.general, m.corpus,
                      m.chance, m.help)
    return Metric(name.replace("_", " "), not name.startswith(("ppl", "perplexity")), suite=suite,
                  general=suite == "benchmarks")
