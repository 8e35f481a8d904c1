"""QueryScores must give exactly what Task.score gives, on all queries and on any resample."""

from __future__ import annotations

import random

import numpy as np
import pytest

from hydralm.evaluation import QueryScores
from hydralm.tasks import get_task

WORDS = "the a neural model of graphs for learning deep fast robust small data".split()


def _classification(rng, n):
    labels = get_task("LaMP-2N").labels
    golds = [rng.choice(labels[:5]) for _ in range(n)]
    preds = [rng.choice([*labels[:6], None, "not a label", f" {labels[0]} "]) for _ in range(n)]
    return preds, golds


def _rating(rng, n):
    golds = [str(rng.randint(1, 5)) for _ in range(n)]
    preds = [rng.choice(["1", "2", "3", "4", "5", "3.5", None, "seven"]) for _ in range(n)]
    return preds, golds


def _generation(rng, n):
    def sentence():
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 9)))
    golds = [sentence() for _ in range(n)]
    preds = [rng.choice([sentence(), None, "", golds[i]]) for i in range(n)]
    return preds, golds


@pytest.mark.parametrize("task_name, make", [
    ("LaMP-2N", _classification),
    ("LaMP-3", _rating),
    ("LaMP-5", _generation),
])
def test_query_scores_equal_task_score_on_all_queries_and_on_resamples(task_name, make):
    task, rng = get_task(task_name), random.Random(3)
    preds, golds = make(rng, 40)
    scores = QueryScores(task, preds, golds)
    assert scores.metrics() == pytest.approx(task.score(preds, golds), abs=1e-9)
    for seed in range(5):
        idx = np.random.default_rng(seed).integers(0, len(golds), len(golds))
        expected = task.score([preds[i] for i in idx], [golds[i] for i in idx])
        assert scores.metrics(idx) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("preds, golds, message", [
    (["a"], [], "one prediction per gold"),
    ([], [], "empty set"),
    (["politics"], ["not a category"], "golds must be labels"),
])
def test_query_scores_reject_bad_input(preds, golds, message):
    with pytest.raises(ValueError, match=message):
        QueryScores(get_task("LaMP-2N"), preds, golds)
