"""The two reference rows of the quality table: what the history alone is worth, and what picking
the best of the sampled candidates could reach.

- `history_knn`: no LLM. The BM25 top-k history items of the query (the same retrieval as
  `rag_bm25`) vote: the majority label (classification), the mean score (rating), or the target of
  the top-1 item (generation).
- `oracle_best`: the candidate closest to the gold by the task's primary metric, an upper bound
  for any selector over those candidates (the adapter), not a method.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

from hydralm.retrieval import bm25_top_k
from hydralm.tasks import metrics

__all__ = ["closeness", "history_knn", "oracle_best"]


def history_knn(task, query_input: str, profile: Sequence[Mapping], k: int = 4) -> str | None:
    """The history's own answer to the query; None when the user has no history.

    Classification ties go to the label of the best-ranked item among the tied labels. Rating: the
    mean of the k scores, unrounded (LaMP scores a rating as a number, so 3.5 is a valid answer).
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k!r}")
    if not profile:
        return None
    docs = [task.item_text(item) for item in profile]
    top = [profile[i] for i in bm25_top_k(task.query_text(query_input), docs, k=k)]
    targets = [task.item_target(item) for item in top]
    if task.kind == "classification":
        counts = Counter(targets)
        best = max(counts.values())
        return next(t for t in targets if counts[t] == best)
    if task.kind == "rating":
        mean = sum(float(t) for t in targets) / len(targets)
        return f"{mean:g}"
    return targets[0]


def closeness(task, pred: str | None, gold: str) -> float:
    """Higher is closer: the per-query value of the task's primary metric, sign-adjusted."""
    if task.kind == "classification":
        return 1.0 if pred is not None and pred.strip() == gold.strip() else 0.0
    if task.kind == "rating":
        value = float(gold)
        return -abs(metrics.rating_value(pred, value) - value)
    return metrics.rouge([pred], [gold])[task.primary_metric]


def oracle_best(task, candidates: Sequence[str], gold: str) -> str | None:
    """The parsed candidate that scores best against `gold` (the first of equals); None when
    there are no candidates."""
    parsed = [task.parse(c) for c in candidates]
    if not parsed:
        return None
    scores = [closeness(task, p, gold) for p in parsed]
    return parsed[max(range(len(parsed)), key=lambda i: (scores[i], -i))]
