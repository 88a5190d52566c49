"""Task metrics on generated text: exact match, GSM8K answer extraction, ROUGE, BLEU and chrF.

ROUGE comes from rouge-score and BLEU/chrF from sacrebleu, called directly (evaluate.load
cannot fetch its metric scripts offline). Chinese text is tokenised by character for ROUGE,
since rouge-score's default tokenizer drops every non-ASCII character.

    exact_match(" 42 ", "42")  # 1.0
"""

from __future__ import annotations

import re


def normalize(text: str) -> str:
    return " ".join(text.strip().split())


def exact_match(prediction: str, reference: str) -> float:
    return float(normalize(prediction) == normalize(reference))


_GSM_STRICT = re.compile(r"#### (\-?[0-9\.\,]+)")


def gsm_answer(text: str) -> str:
    """The number after `#### ` (lm-eval's strict-match filter), without commas; '' if absent."""
    m = _GSM_STRICT.search(text)
    return m.group(1).replace(",", "").rstrip(".") if m else ""


class _CharTokenizer:
    """One token per non-space character, so ROUGE works on Chinese (rouge-score drops non-ASCII)."""

    def tokenize(self, text: str) -> list[str]:
        return [c for c in text if not c.isspace()]


def _has_cjk(text: str) -> bool:
    return any("\u4e00" <= c <= "\u9fff" for c in text)


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F1 from rouge-score (stemmed English; by character for Chinese)."""
    from rouge_score import rouge_scorer

    if _has_cjk(reference):
        scorer = rouge_scorer.RougeScorer(["rougeL"], tokenizer=_CharTokenizer())
    else:
        scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return scorer.score(reference, prediction)["rougeL"].fmeasure
