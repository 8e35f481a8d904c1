"""Selection diagnostics on hand-made outcomes: gold among the candidates, the adapter's picks
against chance, and the majority vote."""

from __future__ import annotations

import pytest

from hydralm.evaluation import Estimate, QueryOutcome, selection_diagnostics, selection_margin
from hydralm.tasks import get_task

TAG = get_task("synth-tag")


def _outcome(gold: str, candidates: list[str], hydra: str) -> QueryOutcome:
    return QueryOutcome("u", "q", gold, answers={"hydra": hydra}, candidates=candidates)


def test_classification_diagnostics_by_hand():
    outcomes = [
        # Gold among 4 candidates once (1/4 chance), the adapter picks it; majority: comedy.
        _outcome("sci-fi", ["comedy", "comedy", "sci-fi", "action"], "sci-fi"),
        # Gold twice (2/4 chance), the adapter misses; majority: romance (first of a 2-2 tie).
        _outcome("romance", ["romance", "action", "romance", "action"], "action"),
        # Gold absent: every candidate is equally (un)good, so any pick is a "best" one.
        _outcome("classic", ["comedy", "action", "comedy", "fantasy"], "comedy"),
    ]
    d = selection_diagnostics(TAG, outcomes)
    assert d["queries"] == 3
    assert d["gold_among_candidates"] == pytest.approx(2 / 3)
    assert d["adapter_picks_best"] == pytest.approx(2 / 3)
    assert d["random_picks_best"] == pytest.approx((1 / 4 + 2 / 4 + 1) / 3)
    assert d["majority_vote_accuracy"] == pytest.approx(1 / 3)


def test_rating_diagnostics_use_the_closest_score():
    task = get_task("LaMP-3")
    d = selection_diagnostics(task, [_outcome("4", ["1", "5", "3"], "5")])
    # 5 and 3 are both 1 away from 4: two best candidates of three, and the adapter took one.
    assert d["gold_among_candidates"] is None
    assert d["adapter_picks_best"] == 1.0 and d["random_picks_best"] == pytest.approx(2 / 3)


def test_the_adapters_own_pick_is_counted_before_the_guard():
    # The adapter's argmax (0.9: sci-fi) is the gold; the guard fell back to comedy.
    outcome = QueryOutcome("u", "q", "sci-fi", answers={"hydra": "comedy"},
                           candidates=["comedy", "sci-fi", "action"],
                           adapter_scores=[0.2, 0.9, 0.1])
    d = selection_diagnostics(TAG, [outcome])
    assert d["adapter_picks_best"] == 1.0 and d["hydra_picks_best"] == 0.0


def test_no_candidates_no_diagnostics():
    assert selection_diagnostics(TAG, [QueryOutcome("u", "q", "sci-fi")]) == {"queries": 0}


def test_the_margins_interval_resamples_each_seeds_queries_around_the_pooled_margin():
    picked = QueryOutcome("u", "q1", "sci-fi", answers={"hydra": "sci-fi"},
                          candidates=["sci-fi", "comedy"], adapter_scores=[0.9, 0.1])
    missed = QueryOutcome("u", "q2", "sci-fi", answers={"hydra": "comedy"},
                          candidates=["sci-fi", "comedy"], adapter_scores=[0.1, 0.9])
    runs = [[picked, picked, missed], [picked, QueryOutcome("u", "q3", "x")]]
    m = selection_margin(TAG, runs, resamples=200, seed=0)
    pooled = selection_diagnostics(TAG, [o for run in runs for o in run])
    # per query: +0.5 when the adapter took the gold (1 of 2 best), -0.5 when it missed
    assert m.mean == pytest.approx(pooled["adapter_picks_best"] - pooled["random_picks_best"])
    assert m.mean == pytest.approx((0.5 * 3 - 0.5) / 4)
    assert -0.5 <= m.ci_low < m.mean < m.ci_high <= 0.5
    assert selection_margin(TAG, runs, resamples=200, seed=0) == m   # seeded: reproducible
    # every query the same margin: no spread to resample
    assert selection_margin(TAG, [[picked, picked]], resamples=50) == Estimate(0.5, 0.5, 0.5)
    assert selection_margin(TAG, [[QueryOutcome("u", "q", "x")]]) is None
