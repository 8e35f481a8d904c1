"""Bootstrap intervals: deterministic by seed, around the mean, and about as wide as theory says."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hydralm.evaluation import QueryScores, bootstrap, bootstrap_difference, resample_indices
from hydralm.tasks import get_task

TASK = get_task("synth-tag")


def _scores(hits: list[bool]) -> QueryScores:
    gold = TASK.labels[0]
    return QueryScores(TASK, [gold if h else TASK.labels[1] for h in hits], [gold] * len(hits))


def _sample(p: float, n: int, seed: int) -> list[bool]:
    return list(np.random.default_rng(seed).random(n) < p)


def test_interval_is_deterministic_by_seed_and_contains_the_mean():
    run = _scores(_sample(0.3, 120, 0))
    first = bootstrap([run], resamples=400, seed=5)
    assert first == bootstrap([run], resamples=400, seed=5)
    assert first != bootstrap([run], resamples=400, seed=6)
    for estimate in first.values():
        assert estimate.ci_low <= estimate.mean <= estimate.ci_high


def test_accuracy_interval_matches_the_normal_approximation():
    hits = _sample(0.3, 400, 1)
    p = sum(hits) / len(hits)
    half = 1.96 * math.sqrt(p * (1 - p) / len(hits))
    acc = bootstrap([_scores(hits)], resamples=2000, seed=0)["accuracy"]
    assert acc.mean == pytest.approx(p)
    assert acc.ci_low == pytest.approx(p - half, abs=0.012)
    assert acc.ci_high == pytest.approx(p + half, abs=0.012)


def test_intervals_cover_the_true_accuracy_about_95_percent_of_the_time():
    true_p, covered, trials = 0.35, 0, 120
    for trial in range(trials):
        acc = bootstrap([_scores(_sample(true_p, 150, 100 + trial))], resamples=300,
                        seed=trial)["accuracy"]
        covered += acc.ci_low <= true_p <= acc.ci_high
    assert 0.88 <= covered / trials <= 0.99


def test_seeds_are_averaged_and_narrow_the_interval():
    one = bootstrap([_scores(_sample(0.5, 100, 2))], resamples=500)
    runs = [_scores(_sample(0.5, 100, s)) for s in (2, 3, 4)]
    three = bootstrap(runs, resamples=500)
    assert three["accuracy"].mean == pytest.approx(
        np.mean([r.metrics()["accuracy"] for r in runs]))
    width = {k: v["accuracy"].ci_high - v["accuracy"].ci_low for k, v in
             {"one": one, "three": three}.items()}
    assert width["three"] < width["one"]


def test_every_method_on_the_same_queries_is_resampled_identically():
    assert np.array_equal(resample_indices(50, 10, 3), resample_indices(50, 10, 3))
    assert not np.array_equal(resample_indices(50, 10, 3), resample_indices(50, 10, 4))


@pytest.mark.parametrize("kwargs, message", [
    ({"runs": []}, "at least one seed"),
    ({"confidence": 1.0}, "confidence"),
    ({"resamples": 0}, "resamples"),
])
def test_bootstrap_rejects_bad_arguments(kwargs, message):
    args = {"runs": [_scores([True, False])], **kwargs}
    runs = args.pop("runs")
    with pytest.raises(ValueError, match=message):
        bootstrap(runs, **args)


def test_paired_difference_of_identical_methods_is_exactly_zero():
    run = _scores(_sample(0.4, 80, 7))
    diff = bootstrap_difference([run], [run], "accuracy", resamples=200)
    assert (diff.mean, diff.ci_low, diff.ci_high) == (0.0, 0.0, 0.0)


def test_paired_difference_is_narrower_than_the_two_intervals_suggest():
    # b is right wherever a is, plus on 10 more of 100 queries: a constant +0.1 gain.
    a_hits = _sample(0.4, 100, 8)
    b_hits = list(a_hits)
    flipped = [i for i, hit in enumerate(a_hits) if not hit][:10]
    for i in flipped:
        b_hits[i] = True
    a, b = _scores(a_hits), _scores(b_hits)
    diff = bootstrap_difference([b], [a], "accuracy", resamples=500)
    assert diff.mean == pytest.approx(0.1)
    assert 0.0 < diff.ci_low <= 0.1 <= diff.ci_high < 0.2
    ia, ib = bootstrap([a], resamples=500)["accuracy"], bootstrap([b], resamples=500)["accuracy"]
    assert ib.ci_low < ia.ci_high  # the separate intervals overlap; the paired one excludes 0


def test_paired_difference_needs_the_same_queries():
    with pytest.raises(ValueError, match="same queries"):
        bootstrap_difference([_scores([True])], [_scores([True, False])], "accuracy")
