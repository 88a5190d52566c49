"""Task metrics on generated text: accuracy, exact match, GSM8K answer extraction, ROUGE, BLEU and chrF.

ROUGE comes from rouge-score and BLEU/chrF from sacrebleu, called directly (evaluate.load
cannot fetch its metric scripts offline), so every value equals the library's own.
Chinese text is scored by character: rouge-score's default tokenizer keeps only [a-z0-9]
(it scores identical Chinese strings 0.0), and sacrebleu's `tokenize="zh"` splits CJK characters.
Every function takes a list of references per item (multi-reference sets such as DialogSum's three).

    exact_match(" 42 ", "42")                                   # 1.0
    rouge(["the cat sat"], [["a cat sat"]])["rougeL"]           # per-item F1
    bleu(["the cat sat"], [["a cat sat"]]).score(...)           # corpus BLEU from summed statistics
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable

import numpy as np

from harness.evals.stats import CorpusScores


def normalize(text: str) -> str:
    return " ".join(text.strip().split())


def exact_match(prediction: str, reference: str) -> float:
    return float(normalize(prediction) == normalize(reference))


def label_match(prediction: str, reference: str) -> float:
    """Accuracy for label-like answers: the reply's first line, case and edge punctuation ignored."""
    lines = prediction.strip().splitlines() or [""]

    def clean(s: str) -> str:
        return normalize(s).strip(string.punctuation + "。，！？ ").casefold()

    return float(clean(lines[0]) == clean(reference))


_GSM_STRICT = re.compile(r"#### (\-?[0-9\.\,]+)")


def gsm_answer(text: str) -> str:
    """The number after `#### ` (lm-eval's strict-match filter), without commas; '' if absent."""
    m = _GSM_STRICT.search(text)
    return m.group(1).replace(",", "").rstrip(".") if m else ""


def has_cjk(text: str) -> bool:
    return any("\u4e00" <= c <= "\u9fff" for c in text)


class _CharTokenizer:
    """One token per non-space character, so ROUGE works on Chinese (rouge-score drops non-ASCII)."""

    def tokenize(self, text: str) -> list[str]:
        return [c for c in text if not c.isspace()]


ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


def rouge(predictions: list[str], references: list[list[str]]) -> dict[str, list[float]]:
    """Per-item ROUGE-1/2/L F1 from rouge-score; the best reference counts (its `score_multi`).

    English is stemmed (the common `use_stemmer=True`); an item whose references hold
    Chinese is scored by character.
    """
    from rouge_score import rouge_scorer

    english = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
    chinese = rouge_scorer.RougeScorer(list(ROUGE_TYPES), tokenizer=_CharTokenizer())
    out: dict[str, list[float]] = {t: [] for t in ROUGE_TYPES}
    for pred, refs in zip(predictions, references, strict=True):
        scorer = chinese if any(has_cjk(r) for r in refs) else english
        scores = scorer.score_multi(refs, pred)
        for t in ROUGE_TYPES:
            out[t].append(scores[t].fmeasure)
    return out


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F1 of one prediction against one reference."""
    return rouge([prediction], [[reference]])["rougeL"][0]


def _streams(references: list[list[str]]) -> list[list[str | None]]:
    """Per-item reference lists -> sacrebleu's reference streams (None where an item has fewer)."""
    width = max(len(r) for r in references)
    return [[r[k] if k < len(r) else None for r in references] for k in range(width)]


def corpus_scorer(kind: str) -> Callable[[np.ndarray], float]:
    """Corpus `bleu` or `chrf` (sacrebleu's defaults) from summed per-item statistics.

    The score from statistics does not depend on the tokenizer (that shapes the statistics), so
    one scorer serves English and Chinese; reports use it to re-score resampled corpora.
    """
    from sacrebleu.metrics import BLEU, CHRF

    metric = {"bleu": BLEU, "chrf": CHRF}[kind]()
    return lambda summed: metric._compute_score_from_stats(np.asarray(summed).tolist()).score


def _corpus(metric, kind: str, predictions: list[str], references: list[list[str]], sentence) -> CorpusScores:
    stats = metric._extract_corpus_statistics(predictions, _streams(references))
    per_item = [sentence(p, r).score for p, r in zip(predictions, references, strict=True)]
    return CorpusScores(per_item, [list(map(float, s)) for s in stats], corpus_scorer(kind))


def bleu(predictions: list[str], references: list[list[str]]) -> CorpusScores:
    """sacrebleu BLEU (13a; `tokenize="zh"` when the references hold Chinese), corpus-level.

    BLEU is defined on the corpus, so the value is sacrebleu's `corpus_bleu`; its
    statistics are kept per item so a bootstrap can resample items. `per_item` is
    sacrebleu's `sentence_bleu` (exp smoothing), for item-by-item comparison only.
    """
    from sacrebleu import sentence_bleu
    from sacrebleu.metrics import BLEU

    tokenize = "zh" if any(has_cjk(r) for refs in references for r in refs) else "13a"
    return _corpus(BLEU(tokenize=tokenize), "bleu", predictions, references,
                   lambda p, r: sentence_bleu(p, r, tokenize=tokenize))


def chrf(predictions: list[str], references: list[list[str]]) -> CorpusScores:
    """sacrebleu chrF (character n-grams, so Chinese needs no tokenizer), corpus-level like BLEU."""
    from sacrebleu import sentence_chrf
    from sacrebleu.metrics import CHRF

    return _corpus(CHRF(), "chrf", predictions, references, sentence_chrf)
