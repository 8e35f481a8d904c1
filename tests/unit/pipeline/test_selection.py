"""The adapter's pick and the guard against a collapsed selection."""

from __future__ import annotations

import pytest

from hydralm.pipeline.selection import (
    SelectionGuard,
    consensus_index,
    history_index,
    select_candidate,
)
from hydralm.tasks import get_task

OFF = SelectionGuard()
GUARD = SelectionGuard(min_spread=0.01)


@pytest.mark.parametrize("scores, guard, index, how", [
    ([0.1, 0.9, 0.3], OFF, 1, "adapter"),
    ([0.5, 0.5, 0.2], OFF, 0, "adapter"),                       # ties: the earlier candidate
    ([0.1, 0.9, 0.3], GUARD, 1, "adapter"),                     # spread 0.8: the head decides
    ([0.030, 0.033, 0.031], GUARD, 2, "fallback"),              # spread 0.003: consensus
    ([0.030, 0.033, 0.031], SelectionGuard(0.01, "first"), 0, "fallback"),
])
def test_select_candidate_table(scores, guard, index, how):
    candidates = ["comedy", "sci-fi", "comedy"]
    picked = select_candidate(candidates, scores, guard, parse=get_task("synth-tag").parse)
    assert (picked.index, picked.how) == (index, how)


def test_consensus_on_labels_breaks_ties_by_adapter_score():
    parse = get_task("synth-tag").parse
    candidates = ["comedy", "sci-fi", "sci-fi", "comedy", "nonsense"]
    assert consensus_index(candidates, [0.1, 0.2, 0.1, 0.3, 0.9], parse=parse) == 3


def test_consensus_on_generation_picks_the_medoid():
    candidates = ["Robust Graph Learning for Molecules", "Robust Graph Learning of Molecules",
                  "A Totally Different Thing", "Graph Learning for Molecules"]
    assert consensus_index(candidates, [0.0] * 4) == 0


def test_history_rule_picks_the_users_own_answer_and_ties_go_to_consensus():
    parse = get_task("synth-tag").parse
    candidates = ["comedy", "sci-fi", "comedy", "action"]
    collapsed = [0.030, 0.033, 0.031, 0.030]
    guard = SelectionGuard(0.01, "history")
    # the prompt's items were tagged action twice and sci-fi once: action, though one candidate
    picked = select_candidate(candidates, collapsed, guard, parse=parse,
                              history=["action", "sci-fi", "action"])
    assert (picked.index, picked.how) == (3, "fallback")
    # no candidate matches the history, or no history: the consensus pick (comedy, by score)
    assert history_index(candidates, collapsed, ["horror"], parse=parse) == 2
    assert select_candidate(candidates, collapsed, guard, parse=parse).index == 2
    # an unguarded pick ignores the history
    assert select_candidate(candidates, [0.1, 0.9, 0.2, 0.1], guard, parse=parse,
                            history=["action"]).index == 1


def test_history_rule_on_generation_picks_the_closest_to_past_outputs():
    candidates = ["Deep Learning for Graphs", "A Survey of Robot Navigation",
                  "Deep Learning for Graphs and Molecules"]
    history = ["Robot Navigation in Crowds", "A Survey of Robot Planning"]
    assert history_index(candidates, [0.0] * 3, history) == 1
    assert consensus_index(candidates, [0.0] * 3) != 1


def test_one_candidate_is_never_a_fallback_and_bad_input_is_named():
    assert select_candidate(["a"], [0.5], GUARD).how == "adapter"
    with pytest.raises(ValueError, match="2 candidates and 1 scores"):
        select_candidate(["a", "b"], [0.5], GUARD)
    with pytest.raises(ValueError, match="min_spread must be in"):
        SelectionGuard(min_spread=2.0)
    with pytest.raises(ValueError, match="rule must be one of consensus, first, history"):
        SelectionGuard(rule="vote")
