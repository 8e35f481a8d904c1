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
