"""The label rules: when a black-box answer makes a pair positive.

Reranker (one answer per (query, item) pair, from the one-shot prompt with that item):
- classification and rating: 1 when the parsed answer equals the gold;
- generation: score = (ROUGE-1 + ROUGE-L) / 2 of the answer against the gold, and 1 when the score
  is strictly above the mean score of that user's pairs (a relative rule: the absolute ROUGE of a
  small model is low everywhere, what matters is which items helped more than usual).

Adapter (N sampled candidates per RAG prompt):
- classification and rating: a candidate is 1 when its parsed answer equals the gold;
- generation: every candidate is 0 and the gold output itself is added as a pair labelled 1.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from hydralm.labels.pairs import AdapterCall, RerankerCall
from hydralm.labels.schema import LabelRecord, Stage
from hydralm.tasks import metrics

__all__ = [
    "above_user_mean",
    "adapter_labels",
    "answer_matches",
    "answer_score",
    "reranker_labels",
]


def answer_matches(task, answer: str | None, gold: str) -> bool:
    """Whether an answer, parsed by the task, is the gold label (case-insensitive)."""
    parsed = task.parse(answer)
    return parsed is not None and parsed.strip().casefold() == str(gold).strip().casefold()


def answer_score(task, answer: str | None, gold: str) -> float:
    """What a rule compares: 1.0/0.0 for a label match, (ROUGE-1 + ROUGE-L)/2 for generation."""
    if task.kind == "generation":
        scores = metrics.rouge([task.parse(answer)], [str(gold)])
        return (scores["rouge-1"] + scores["rouge-l"]) / 2.0
    return 1.0 if answer_matches(task, answer, gold) else 0.0


def above_user_mean(user_ids: Sequence[str], scores: Sequence[float]) -> list[int]:
    """1 where a score is strictly above the mean of the scores of the same user, else 0."""
    if len(user_ids) != len(scores):
        raise ValueError(f"need one user id per score, got {len(user_ids)} and {len(scores)}")
    totals: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for user, score in zip(user_ids, scores, strict=True):
        totals[user][0] += score
        totals[user][1] += 1
    return [int(score > totals[user][0] / totals[user][1])
            for user, score in zip(user_ids, scores, strict=True)]


def reranker_labels(task, calls: Sequence[RerankerCall], answers: Sequence[str | None], *,
                    stage: Stage) -> list[LabelRecord]:
    """One label record per reranker call. For generation the per-user mean is taken over
    `calls`, so pass all of a user's calls together."""
    if len(calls) != len(answers):
        raise ValueError(f"need one answer per call, got {len(answers)} for {len(calls)} calls")
    scores = [answer_score(task, a, c.query.gold)
              for c, a in zip(calls, answers, strict=True)]
    if task.kind == "generation":
        labels = above_user_mean([c.query.user_id for c in calls], scores)
    else:
        labels = [int(s == 1.0) for s in scores]
    return [LabelRecord(model="reranker", stage=stage, user_id=c.query.user_id,
                        query_id=c.query.query_id, source=c.query.source, item_id=c.item_id,
                        first=c.first, second=c.second, answer=a or "", gold=c.query.gold,
                        score=s, label=y)
            for c, a, s, y in zip(calls, answers, scores, labels, strict=True)]


def adapter_labels(task, call: AdapterCall, candidates: Sequence[str], *,
                   stage: Stage, best_candidate_positive: bool = False) -> list[LabelRecord]:
    """Label records for one sampling call's candidates (and the gold pair for generation).

    Generation: the gold is the positive and every candidate a negative (the paper's rule), or,
    with `best_candidate_positive`, the candidates with the best score (above 0) are positives
    too, so the adapter also learns to rank the generator's own answers."""
    query = call.query
    scores = [answer_score(task, cand, query.gold) for cand in candidates]
    top = max(scores, default=0.0)
    rows: list[tuple[str, str, float, int]] = []  # (item_id, candidate, score, label)
    for i, (cand, score) in enumerate(zip(candidates, scores, strict=True)):
        if task.kind != "generation":
            label = int(score == 1.0)
        else:
            label = int(best_candidate_positive and top > 0.0 and score == top)
        rows.append((str(i), cand, score, label))
    if task.kind == "generation":
        rows.append(("gold", query.gold, 1.0, 1))
    firsts, seconds = call.pairs(task, [text for _, text, _, _ in rows])
    return [LabelRecord(model="adapter", stage=stage, user_id=query.user_id,
                        query_id=query.query_id,
                        source="gold" if item_id == "gold" else query.source, item_id=item_id,
                        first=first, second=second, answer=text, gold=query.gold, score=score,
                        label=label, retrieval=call.retrieval)
            for (item_id, text, score, label), first, second
            in zip(rows, firsts, seconds, strict=True)]
