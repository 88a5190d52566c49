"""What each reported metric means: direction, label and format. Reports and the gate read this.

    METRICS["ppl_in_domain"].higher_is_better   # False
    CHANCE["mmlu_acc"], HELP["ppl_general"]      # 0.25, one line for the leaderboard's glossary
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    label: str
    higher_is_better: bool
    fmt: str = "{:.3f}"
    suite: str = ""
    general: bool = False  # a general-ability score: its drop against the base model is forgetting
    corpus: str = ""  # a corpus metric ("bleu", "chrf"): its deltas re-score both sides' summed item statistics


METRICS = {
    "ppl_in_domain": Metric("PPL in-domain", False, "{:.2f}", "perplexity"),
    "ppl_general": Metric("PPL general", False, "{:.2f}", "perplexity", general=True),
    "task_exact_match": Metric("task EM", True, "{:.3f}", "task"),
    "task_accuracy": Metric("task accuracy", True, "{:.3f}", "task"),
    "task_rouge_1": Metric("task ROUGE-1", True, "{:.3f}", "task"),
    "task_rouge_2": Metric("task ROUGE-2", True, "{:.3f}", "task"),
    "task_rouge_l": Metric("task ROUGE-L", True, "{:.3f}", "task"),
    "task_bleu": Metric("task BLEU", True, "{:.1f}", "task", corpus="bleu"),  # corpus BLEU, 0-100 as sacrebleu
    "task_chrf": Metric("task chrF", True, "{:.1f}", "task", corpus="chrf"),  # corpus chrF, 0-100
    # benchmarks (lm-eval's tasks): <name>_<lm-eval metric>[_<filter>]; cloze = each option's text scored
    "mmlu_acc": Metric("MMLU acc", True, "{:.3f}", "benchmarks", general=True),
    "mmlu_cloze_acc": Metric("MMLU acc (cloze)", True, "{:.3f}", "benchmarks", general=True),
    "mmlu_cloze_acc_norm": Metric("MMLU acc_norm (cloze)", True, "{:.3f}", "benchmarks", general=True),
    "ceval_acc": Metric("C-Eval acc", True, "{:.3f}", "benchmarks", general=True),
    "ceval_acc_norm": Metric("C-Eval acc_norm", True, "{:.3f}", "benchmarks", general=True),
    "ceval_cloze_acc": Metric("C-Eval acc (cloze)", True, "{:.3f}", "benchmarks", general=True),
    "ceval_cloze_acc_norm": Metric("C-Eval acc_norm (cloze)", True, "{:.3f}", "benchmarks", general=True),
    "gsm8k_exact_match_strict_match": Metric("GSM8K EM (strict)", True, "{:.3f}", "benchmarks", general=True),
    "gsm8k_exact_match_flexible_extract": Metric("GSM8K EM (flexible)", True, "{:.3f}", "benchmarks", general=True),
    "refusal_harmful": Metric("refusal harmful", True, "{:.3f}", "safety"),
    "refusal_benign": Metric("over-refusal benign", False, "{:.3f}", "safety"),
    "helpful_benign": Metric("helpful benign", True, "{:.3f}", "safety"),  # not refused, coherent, on topic
    "refusal_harmful_keyword": Metric("refusal harmful (AdvBench keyword)", True, "{:.3f}", "safety"),
}

# What guessing scores on a multiple-choice benchmark (1 / options; the tiny world's and the real MMLU and
# C-Eval have 4): a column where every cell's interval includes it says nothing about the cells.
CHANCE = {name: 0.25 for name in ("mmlu_acc", "mmlu_cloze_acc", "mmlu_cloze_acc_norm", "ceval_acc", "ceval_acc_norm",
                                  "ceval_cloze_acc", "ceval_cloze_acc_norm")}

HELP = {
    "ppl_in_domain": "perplexity of the validation split's answer tokens (exp of the mean NLL per token)",
    "ppl_general": "perplexity of every token of the general text: the forgetting proxy",
    "task_exact_match": "share of test replies equal to a reference",
    "task_accuracy": "share of test replies whose label matches the reference's",
    "task_rouge_1": "ROUGE-1 F1 of each reply against its reference (by character for Chinese)",
    "task_rouge_2": "ROUGE-2 F1 of each reply against its reference",
    "task_rouge_l": "ROUGE-L F1 (longest common subsequence) of each reply against its reference",
    "task_bleu": "corpus BLEU of the replies, 0-100 (sacrebleu)",
    "task_chrf": "corpus chrF of the replies, 0-100 (sacrebleu)",
    "mmlu_acc": "lm-eval MMLU in the letter form (\" A\"..\" D\" scored): accuracy",
    "mmlu_cloze_acc": "lm-eval MMLU in the cloze form (each option's text scored): accuracy",
    "mmlu_cloze_acc_norm": "MMLU cloze, option log-likelihoods normalised by length: accuracy",
    "ceval_acc": "lm-eval C-Eval (valid) in the letter form: accuracy",
    "ceval_acc_norm": "C-Eval letter form, normalised by length: accuracy",
    "ceval_cloze_acc": "C-Eval in the cloze form: accuracy",
    "ceval_cloze_acc_norm": "C-Eval cloze, normalised by length: accuracy",
    "gsm8k_exact_match_strict_match": "lm-eval GSM8K: the `#### n` answer equals the reference",
    "gsm8k_exact_match_flexible_extract": "lm-eval GSM8K: the last number of the reply equals the reference",
    "refusal_harmful": "share of harmful prompts (AdvBench layout) refused: higher is safer",
    "refusal_benign": "share of benign look-alikes (XSTest layout) refused: lower is more helpful",
}


def describe(name: str) -> Metric:
    """The metric's meaning. Names only known at run time are the benchmarks suite's other lm-eval tasks
    (arc_easy_acc, ...): general abilities, so their drop against the base model counts as forgetting."""
    return METRICS.get(name) or Metric(name.replace("_", " "), not name.startswith(("ppl", "perplexity")),
                                       suite="benchmarks", general=True)
