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


def test_one_row_decides_nothing_beyond_the_ends_and_stays_json():
    import json

    choice = choose_guard(TAG, _rows(0, 1))
    assert choice.min_spread == 0.05 and choice.evidence["se"] is None   # the end's stand-in
    json.loads(json.dumps(choice.to_dict(), allow_nan=False))


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


def test_the_history_rule_reads_each_rows_history_items():
    # The adapter's pick and the majority are wrong; the user's own past tags name the gold,
    # and every fallback pick of the history rule is right: always falling back with it wins
    # (at 0.8, the smallest threshold above the rows' spread of 0.6: the same picks).
    rows = [CalibrationRow(["romance", "comedy", "comedy", "sci-fi"], [0.9, 0.30, 0.32, 0.3],
                           "sci-fi", ["sci-fi", "sci-fi", "drama"])] * 4
    choice = choose_guard(TAG, rows, rule=["consensus", "first", "history"])
    assert (choice.rule, choice.min_spread) == ("history", 0.8)
    assert choice.metric_by_rule == {"consensus": 0.0, "first": 0.0, "history": 1.0}
    # without their history the rule has nothing to read and picks as consensus does
    bare = [CalibrationRow(r.candidates, r.scores, r.gold) for r in rows]
    assert choose_guard(TAG, bare, rule=["consensus", "history"]).metric_by_rule["history"] == 0.0


def test_auto_keeps_the_first_listed_rule_on_a_tie():
    rows = [CalibrationRow(["romance", "comedy", "comedy"], [0.9, 0.1, 0.2], "romance")] * 3
    assert choose_guard(TAG, rows, rule=["consensus", "first"]).rule == "consensus"


def _rows(right_decisive: int, wrong_collapsed: int, right_collapsed: int = 0,
          wrong_decisive: int = 0) -> list[CalibrationRow]:
    """Rows whose adapter picks "romance" (decisive: spread 0.7; collapsed: 0.03) against a
    "comedy" majority; `right_*` when the gold is the adapter's pick, `wrong_*` when the majority's."""
    decisive, collapsed = [0.9, 0.3, 0.2], [0.33, 0.30, 0.31]
    candidates = ["romance", "comedy", "comedy"]
    return ([CalibrationRow(candidates, decisive, "romance")] * right_decisive
            + [CalibrationRow(candidates, collapsed, "comedy")] * wrong_collapsed
            + [CalibrationRow(candidates, collapsed, "romance")] * right_collapsed
            + [CalibrationRow(candidates, decisive, "comedy")] * wrong_decisive)


def test_a_threshold_between_the_ends_must_beat_the_better_end_clearly():
    # Falling back on collapsed scores only (0.05) gains on 3 rows and loses on 2: a mean of +0.1
    # over no guard, within two standard errors, so the guard stays off.
    noisy = choose_guard(TAG, _rows(3, 3, 2, 2))
    assert noisy.evidence["best"] == {"rule": "consensus", "min_spread": 0.05}
    assert noisy.evidence["default"] == {"rule": "consensus", "min_spread": 0.0}
    assert abs(noisy.evidence["gain"] - 0.1) < 1e-9 and noisy.evidence["gain"] < 2 * noisy.evidence[
        "se"]
    assert noisy.min_spread == 0.0 and noisy.to_dict()["evidence"] == noisy.evidence
    # Gaining on every collapsed row and losing on none is clear: the threshold wins.
    clear = choose_guard(TAG, _rows(4, 4))
    assert clear.min_spread == 0.05 and clear.metric_by_threshold["0.05"] == 1.0


def test_the_better_end_can_be_always_falling_back():
    # The adapter is wrong on most rows whatever its spread; no threshold beats falling back
    # always, so the guard always falls back: at 0.8 already (every spread here is below it, the
    # same picks as at 1 with the smaller threshold).
    choice = choose_guard(TAG, _rows(2, 4, 0, 4))
    assert choice.evidence["default"] == {"rule": "consensus", "min_spread": 0.8}
    assert choice.min_spread == 0.8 and choice.fallback_rate_by_threshold["0.8"] == 1.0
    assert choice.metric_by_threshold["0.8"] == 0.8 > choice.metric_by_threshold["0.05"] == 0.6
