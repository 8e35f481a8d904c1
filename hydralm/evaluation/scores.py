"""A task's metrics on any resample of the test queries, fast enough to bootstrap.

`Task.score` is the reference (LaMP's semantics); re-running it 1,000 times per method would
re-tokenize every ROUGE and BLEU pair each time. `QueryScores` computes each query's share of every
metric once (a hit, a label index, an absolute error, ROUGE F-measures, BLEU n-gram counts) and
then aggregates any multiset of query indices with numpy. On all queries it gives what
`Task.score` gives (the unit tests check it per task kind).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from hydralm.tasks import metrics

__all__ = ["QueryScores"]

log = logging.getLogger(__name__)


class QueryScores:
    """Per-query statistics of one method's parsed predictions against the golds of one task."""

    def __init__(self, task, preds: Sequence[str | None], golds: Sequence[str]) -> None:
        if len(preds) != len(golds):
            raise ValueError(f"need one prediction per gold, got {len(preds)} predictions for "
                             f"{len(golds)} golds")
        if not golds:
            raise ValueError("cannot score an empty set of queries")
        self.task = task
        self.size = len(golds)
        golds = [str(g).strip() for g in golds]
        builders = {"classification": self._classification, "rating": self._rating,
                    "generation": self._generation}
        self._columns: dict[str, np.ndarray] = builders[task.kind](preds, golds)

    def metrics(self, indices: np.ndarray | None = None) -> dict[str, float]:
        """The task's metrics on the queries at `indices` (repeats allowed; None: all)."""
        cols = self._columns if indices is None else {k: v[indices] for k, v in
                                                      self._columns.items()}
        if self.task.kind == "classification":
            return {"accuracy": float(cols["hit"].mean()), "f1": self._macro_f1(cols)}
        if self.task.kind == "rating":
            return {"mae": float(cols["abs"].mean()), "rmse": float(np.sqrt(cols["sq"].mean()))}
        return {"rouge-1": float(cols["rouge1"].mean()), "rouge-l": float(cols["rougeL"].mean()),
                "bleu": _bleu(cols["bleu"])}

    # --- per-query columns -----------------------------------------------------------------

    def _classification(self, preds, golds) -> dict[str, np.ndarray]:
        labels = list(self.task.labels)
        index = {label: i for i, label in enumerate(labels)}
        unknown = [g for g in golds if g not in index]
        if unknown:
            raise ValueError(f"{self.task.name} golds must be labels of the task, got "
                             f"{unknown[0]!r}")
        gold = np.array([index[g] for g in golds], dtype=np.int64)
        # A prediction outside the label set (or None) is -1: a miss, and nobody's false positive.
        pred = np.array([index.get(p.strip(), -1) if p is not None else -1 for p in preds],
                        dtype=np.int64)
        return {"gold": gold, "pred": pred, "hit": (pred == gold).astype(np.float64)}

    def _macro_f1(self, cols: dict[str, np.ndarray]) -> float:
        # Per label 2TP / (2TP + FP + FN), where 2TP + FP + FN = predicted + gold counts.
        n = len(self.task.labels)
        pred, gold = cols["pred"], cols["gold"]
        tp = np.bincount(gold[pred == gold], minlength=n)
        predicted = np.bincount(pred[pred >= 0], minlength=n)
        denominator = predicted + np.bincount(gold, minlength=n)
        f1 = np.divide(2.0 * tp, denominator, out=np.zeros(n), where=denominator > 0)
        return float(f1.mean())

    def _rating(self, preds, golds) -> dict[str, np.ndarray]:
        values = np.array([float(g) for g in golds])
        guesses = np.array([metrics.rating_value(p, g) for p, g in zip(preds, values,
                                                                       strict=True)])
        err = guesses - values
        return {"abs": np.abs(err), "sq": err ** 2}

    def _generation(self, preds, golds) -> dict[str, np.ndarray]:
        rouge1, rougel = [], []
        for pred, gold in zip(preds, golds, strict=True):
            one = metrics.rouge([pred], [gold])
            rouge1.append(one["rouge-1"])
            rougel.append(one["rouge-l"])
        return {"rouge1": np.array(rouge1), "rougeL": np.array(rougel),
                "bleu": _bleu_stats(preds, golds)}


def _bleu_stats(preds: Sequence[str | None], golds: Sequence[str]) -> np.ndarray:
    """Per query [sys_len, ref_len, matches 1-4, totals 1-4]: corpus BLEU sums these."""
    from sacrebleu.metrics import BLEU  # only generation tasks need it

    # effective_order only changes sentence *scores*, not counts; it silences sacrebleu's warning.
    scorer = BLEU(effective_order=True)
    rows = []
    for pred, gold in zip(preds, golds, strict=True):
        s = scorer.sentence_score((pred or "").strip(), [gold.strip()])
        rows.append([s.sys_len, s.ref_len, *s.counts, *s.totals])
    return np.array(rows, dtype=np.int64)


def _bleu(stats: np.ndarray) -> float:
    """sacrebleu corpus BLEU (exp smoothing, as `corpus_bleu`'s default) from summed stats."""
    from sacrebleu.metrics import BLEU

    total = stats.sum(axis=0).tolist()
    return float(BLEU.compute_bleu(correct=total[2:6], total=total[6:10], sys_len=total[0],
                                   ref_len=total[1], smooth_method="exp").score)
