"""The label rules, as tables: classification/rating match, generation above the user's mean, and
the adapter's gold pair."""

from __future__ import annotations

import pytest

from hydralm.labels import (
    AdapterCall,
    Query,
    RerankerCall,
    above_user_mean,
    adapter_labels,
    answer_matches,
    answer_score,
    reranker_labels,
)
from hydralm.pipeline import adapter_context
from hydralm.tasks import get_task


@pytest.mark.parametrize("task_name, answer, gold, expected", [
    ("LaMP-2N", "sports", "sports", True),
    ("LaMP-2N", "Sports.", "sports", True),               # case and punctuation
    ("LaMP-2N", "food and drink", "food & drink", True),  # the task's alias
    ("LaMP-2N", "politics", "sports", False),
    ("LaMP-2N", "sports or politics", "sports", False),   # ambiguous answers parse to nothing
    ("LaMP-2N", "", "sports", False),
    ("LaMP-2M", "dark comedy", "comedy", False),          # a longer label is another label
    ("LaMP-3", "4", "4", True),
    ("LaMP-3", "I would say 4 stars", "4", True),
    ("LaMP-3", "5", "4", False),
    ("LaMP-3", "nine", "4", False),
])
def test_answer_matches(task_name, answer, gold, expected):
    assert answer_matches(get_task(task_name), answer, gold) is expected


def test_generation_score_is_mean_of_rouge1_and_rougel():
    task = get_task("LaMP-5")
    assert answer_score(task, "a b c d", "a b c d") == pytest.approx(1.0)
    assert answer_score(task, "x y", "a b") == 0.0
    # "a b x" vs "a b c d": ROUGE-1 F = 2*(2/3*2/4)/(2/3+2/4) = 4/7; the LCS is "a b", same F.
    assert answer_score(task, "a b x", "a b c d") == pytest.approx(4 / 7)


@pytest.mark.parametrize("users, scores, expected", [
    (["u", "u", "u"], [0.1, 0.2, 0.6], [0, 0, 1]),        # mean 0.3
    (["u", "u"], [0.5, 0.5], [0, 0]),                     # equal to the mean is not above it
    (["a", "a", "b", "b"], [0.1, 0.3, 0.7, 0.9], [0, 1, 0, 1]),  # each user against their own
    (["a", "b", "a"], [0.2, 0.0, 0.4], [0, 0, 1]),        # interleaved users
    ([], [], []),
])
def test_above_user_mean(users, scores, expected):
    assert above_user_mean(users, scores) == expected


def test_above_user_mean_needs_one_user_per_score():
    with pytest.raises(ValueError, match="one user id per score"):
        above_user_mean(["u"], [0.1, 0.2])


def _reranker_call(user: str, gold: str, item_id: str) -> RerankerCall:
    query = Query(user, f"{user}-q", "query", "input", gold)
    return RerankerCall(query=query, item_id=item_id, messages=({"role": "user", "content": "x"},),
                        first="first", second=f"item {item_id}")


def test_reranker_labels_classification_marks_matches():
    task = get_task("LaMP-2N")
    calls = [_reranker_call("u", "sports", "i0"), _reranker_call("u", "sports", "i1")]
    rows = reranker_labels(task, calls, ["Sports", "travel"], stage="train")
    assert [(r.item_id, r.label, r.score) for r in rows] == [("i0", 1, 1.0), ("i1", 0, 0.0)]
    assert {r.model for r in rows} == {"reranker"} and rows[0].second == "item i0"


def test_reranker_labels_generation_thresholds_per_user():
    task = get_task("LaMP-5")
    calls = [_reranker_call("a", "deep graph networks", f"i{i}") for i in range(3)]
    calls.append(_reranker_call("b", "robust speech models", "j0"))
    answers = ["deep graph networks", "graph models", "unrelated words", "robust speech models"]
    rows = reranker_labels(task, calls, answers, stage="train")
    # User a: scores 1.0, 0.4 (one shared word: P 1/2, R 1/3), 0 -> mean 0.47: only the first is
    # above it. User b alone is at their own mean.
    assert [r.label for r in rows] == [1, 0, 0, 0]
    assert rows[1].score == pytest.approx(0.4)


def _adapter_call(gold: str) -> AdapterCall:
    return AdapterCall(query=Query("u", "q1", "query", "the query", gold), item_ids=("i0",),
                       prompt="the rag prompt", retrieval="bm25")


def test_adapter_labels_classification_one_per_candidate():
    rows = adapter_labels(get_task("LaMP-2M"), _adapter_call("comedy"),
                          ["comedy", "dark comedy", "Comedy!"], stage="fit")
    assert [(r.item_id, r.label, r.source) for r in rows] == [
        ("0", 1, "query"), ("1", 0, "query"), ("2", 1, "query")]
    context = adapter_context(get_task("LaMP-2M"), "the query", "the rag prompt")
    assert context.endswith("the rag prompt") and context.startswith("the query")
    assert all(r.first == context and r.stage == "fit" for r in rows)
    assert [r.second for r in rows] == ["comedy", "dark comedy", "Comedy!"]


def test_adapter_labels_generation_adds_the_gold_as_the_only_positive():
    rows = adapter_labels(get_task("LaMP-5"), _adapter_call("the gold title"),
                          ["the gold title", "another title"], stage="train")
    assert [(r.item_id, r.source, r.second, r.label) for r in rows] == [
        ("0", "query", "the gold title", 0),   # even a perfect candidate is 0
        ("1", "query", "another title", 0),
        ("gold", "gold", "the gold title", 1),
    ]


def test_adapter_labels_generation_can_also_mark_the_best_candidates_positive():
    call = _adapter_call("graph neural networks for molecules")
    cands = ["graph networks for molecules", "molecules", "graph networks for molecules", "cats"]
    rows = adapter_labels(get_task("LaMP-5"), call, cands, stage="train",
                          best_candidate_positive=True)
    assert [(r.item_id, r.label) for r in rows] == [
        ("0", 1), ("1", 0), ("2", 1), ("3", 0), ("gold", 1)]   # both tied best candidates
    nothing = adapter_labels(get_task("LaMP-5"), call, ["cats", "dogs"], stage="train",
                             best_candidate_positive=True)
    assert [(r.item_id, r.label) for r in nothing] == [("0", 0), ("1", 0), ("gold", 1)]
