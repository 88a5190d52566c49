"""Multiple-choice scoring by log-likelihood, in the cloze and the letter formulation.

Cloze scores each option's own text after the question (OLMES recommends it for small
models; lm-eval's `mmlu_continuation` does the same); the letter formulation lists the
options and scores " A".." D", as lm-eval's `mmlu` and `ceval-valid` tasks do.

    per_item = score_mc(model, tok, items, lang="en", formulation="cloze")
"""

from __future__ import annotations

from harness.data.native import MCItem
from harness.evals.lm import DEFAULT_BATCH, shared_context_logprobs

LETTERS = "ABCD"
HEADERS = {
    ("en", "cloze"): "The following are questions (with answers) about {subject}.\n\n",
    ("en", "letter"): "The following are multiple choice questions (with answers) about {subject}.\n\n",
    ("zh", "cloze"): "以下是中国关于{subject}考试的单项选择题，请选出其中的正确答案。\n\n",
    ("zh", "letter"): "以下是中国关于{subject}考试的单项选择题，请选出其中的正确答案。\n\n",
}


def requests(item: MCItem, lang: str, formulation: str, subject_name: str) -> list[tuple[str, str]]:
    header = HEADERS[(lang, formulation)].format(subject=subject_name)
    answer_cue, sep = ("Answer:", " ") if lang == "en" else ("答案：", "")
    if formulation == "cloze":
        q = f"Question: {item.question}" if lang == "en" else item.question
        return [(f"{header}{q}\n{answer_cue}", sep + c) for c in item.choices]
    options = "\n".join(f"{LETTERS[i]}. {c}" for i, c in enumerate(item.choices))
    return [(f"{header}{item.question}\n{options}\n{answer_cue}", sep + LETTERS[i]) for i in range(len(item.choices))]


def score_mc(model, tok, items: list[MCItem], lang: str, formulation: str,
             subject_names: dict[str, str] | None = None, batch_size: int = DEFAULT_BATCH) -> dict[str, list[float]]:
    """Per-item correctness: `acc` (highest log-likelihood) and `acc_norm` (per character, as lm-eval).

    An item's options share its question: the question runs once and its KV cache serves every option.
    """
    names = subject_names or {}
    reqs = [requests(it, lang, formulation, names.get(it.subject, it.subject.replace("_", " "))) for it in items]
    acc, acc_norm = [], []
    for it, rs, lls in zip(items, reqs, shared_context_logprobs(model, tok, reqs, batch_size), strict=True):
        normed = [ll / max(1, len(cont.encode("utf-8"))) for ll, (_, cont) in zip(lls, rs)]
        acc.append(float(max(range(len(lls)), key=lls.__getitem__) == it.answer))
        acc_norm.append(float(max(range(len(normed)), key=normed.__getitem__) == it.answer))
    return {"acc": acc, "acc_norm": acc_norm}
