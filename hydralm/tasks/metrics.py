"""LaMP's metrics as pure functions, with the semantics of LaMP's official evaluation.

LaMP (`eval/evaluation.py`) scores classification with accuracy and macro-F1 over the task's whole
label set (sklearn `f1_score(average="macro", labels=label_set)`: a label that neither the golds nor
the predictions use still counts, with F1 0), ratings with MAE and RMSE (an unparseable answer
counts as whichever of 1 or 5 is farther from the gold), and generation with ROUGE-1 and ROUGE-L
F-measure through HF `evaluate`'s rouge, which calls `rouge_score` WITHOUT stemming. Two
deliberate differences: ROUGE is the exact mean over examples where `evaluate` reports the median
of 1,000 bootstrap resamples of the mean (random, within a hair of the mean), and BLEU (sacrebleu's
corpus BLEU with its defaults, 0-100, as LaMP's training-time metrics report it) is added.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

__all__ = ["accuracy", "bleu", "macro_f1", "mae", "rating_value", "rmse", "rouge"]


def _check_pairs(preds: Sequence, golds: Sequence) -> None:
    if len(preds) != len(golds):
        raise ValueError(
            f"need one prediction per gold, got {len(preds)} predictions for {len(golds)} golds")
    if not golds:
        raise ValueError("cannot score an empty set of predictions")


def accuracy(preds: Sequence[str | None], golds: Sequence[str]) -> float:
    """The fraction of predictions equal to their gold (None never is)."""
    _check_pairs(preds, golds)
    return sum(p is not None and p == g for p, g in zip(preds, golds, strict=True)) / len(golds)


def macro_f1(preds: Sequence[str | None], golds: Sequence[str], labels: Sequence[str]) -> float:
    """Unweighted mean of per-label F1 over `labels` (sklearn's `average="macro", labels=...`).

    Per label, F1 = 2TP / (2TP + FP + FN), and 0 where that is 0/0 (sklearn's zero_division
    default). A prediction outside `labels` (or None) is a miss for its gold's label and a false
    positive for no label, as LaMP's mapping of unknown answers to -1 makes it.
    """
    _check_pairs(preds, golds)
    if not labels:
        raise ValueError("macro_f1 needs a non-empty label set")
    total = 0.0
    for label in labels:
        tp = sum(p == label and g == label for p, g in zip(preds, golds, strict=True))
        fp = sum(p == label and g != label for p, g in zip(preds, golds, strict=True))
        fn = sum(p != label and g == label for p, g in zip(preds, golds, strict=True))
        denominator = 2 * tp + fp + fn
        total += 2 * tp / denominator if denominator else 0.0
    return total / len(labels)


def rating_value(pred: str | None, gold: float, *, low: float = 1.0, high: float = 5.0) -> float:
    """A rating answer as LaMP scores it: its float value, or, when it does not parse as a finite
    number, whichever of `low`/`high` is farther from the gold (`high` on a tie, as in LaMP)."""
    if pred is not None:
        try:
            value = float(pred.strip())
        except ValueError:
            value = math.nan
        if math.isfinite(value):
            return value
    return low if abs(low - gold) > abs(high - gold) else high


def mae(preds: Sequence[float], golds: Sequence[float]) -> float:
    """Mean absolute error."""
    _check_pairs(preds, golds)
    return sum(abs(p - g) for p, g in zip(preds, golds, strict=True)) / len(golds)


def rmse(preds: Sequence[float], golds: Sequence[float]) -> float:
    """Root mean squared error."""
    _check_pairs(preds, golds)
    return math.sqrt(sum((p - g) ** 2 for p, g in zip(preds, golds, strict=True)) / len(golds))


@lru_cache(maxsize=1)
def _rouge_scorer():
    # Imported here: rouge_score pulls in nltk (about 1.4 s), which prompt building and serving
    # (they import hydralm.tasks) never need.
    from rouge_score import rouge_scorer

    # No stemming: LaMP's evaluation calls HF evaluate's rouge with its default use_stemmer=False.
    return rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=False)


def rouge(preds: Sequence[str | None], golds: Sequence[str]) -> dict[str, float]:
    """Mean ROUGE-1 and ROUGE-L F-measure (keys "rouge-1", "rouge-l"); None scores as ""."""
    _check_pairs(preds, golds)
    scorer = _rouge_scorer()
    r1 = rl = 0.0
    for pred, gold in zip(preds, golds, strict=True):
        scores = scorer.score(gold.strip(), (pred or "").strip())
        r1 += scores["rouge1"].fmeasure
        rl += scores["rougeL"].fmeasure
    return {"rouge-1": r1 / len(golds), "rouge-l": rl / len(golds)}


def bleu(preds: Sequence[str | None], golds: Sequence[str]) -> float:
    """sacrebleu corpus BLEU (0-100; 13a tokenization, exp smoothing); None scores as ""."""
    import sacrebleu  # only scoring needs it (see _rouge_scorer)

    _check_pairs(preds, golds)
    hypotheses = [(p or "").strip() for p in preds]
    return float(sacrebleu.corpus_bleu(hypotheses, [[g.strip() for g in golds]]).score)
