"""The selection guard's threshold, chosen on calibration rows (training users' held-out queries)."""

from __future__ import annotations

from hydralm.evaluation.guard import CalibrationRow, choose_guard
from hydralm.tasks import get_task

TAG = get_task("synth-tag")


def test_a_collapsed_adapter_gets_a_threshold_that_falls_back():
    # Nearly equal scores whose argmax is wrong; the majority label is the gold.
    rows = [CalibrationRow(["romance", "comedy", "comedy", "sci-fi"], [0.033, 0.030, 0.031, 0.03],
                           "comedy")] * 5
    choice = choose_guard(TAG, rows)
    assert choice.metric_by_threshold["0.0"] == 0.0
    assert 0.003 < choice.min_spread and choice.metric_by_threshold[str(choice.min_spread)] == 1.0
    assert choice.fallback_rate_by_threshold[str(choice.min_spread)] == 1.0
    assert choice.min_spread == 0.005                   # the smallest threshold that works


def test_a_decisive_right_adapter_keeps_the_guard_off():
    rows = [CalibrationRow(["romance", "comedy", "comedy"], [0.9, 0.1, 0.2], "romance")] * 3
    choice = choose_guard(TAG, rows)
    assert choice.min_spread == 0.0 and choice.queries == 3
    assert choice.metric_by_threshold["0.0"] == 1.0 and choice.metric_by_threshold["0.2"] == 1.0


def test_no_rows_means_no_guard():
    choice = choose_guard(TAG, [CalibrationRow(["only"], [0.5], "only")])
    assert (choice.min_spread, choice.queries, choice.metric_by_threshold) == (0.0, 0, {})


def test_auto_picks_the_rule_whose_fallback_scores_better_on_the_rows():
    # Collapsed scores; the majority is wrong, candidate 0 (the bare query's greedy answer) right.
    rows = [CalibrationRow(["romance", "comedy", "comedy", "sci-fi"], [0.031, 0.030, 0.032, 0.03],
                           "romance")] * 4
    consensus = choose_guard(TAG, rows)
    both = choose_guard(TAG, rows, rule=["consensus", "first"])
    assert consensus.rule == "consensus" and consensus.metric_by_threshold[
        str(consensus.min_spread)] == 0.0
    assert both.rule == "first" and both.min_spread == 0.005
    assert both.metric_by_rule == {"consensus": 0.0, "first": 1.0}
    assert both.to_dict()["rule"] == "first"


def test_auto_keeps_the_first_listed_rule_on_a_tie():
    rows = [CalibrationRow(["romance", "comedy", "comedy"], [0.9, 0.1, 0.2], "romance")] * 3
    assert choose_guard(TAG, rows, rule=["consensus", "first"]).rule == "consensus"
