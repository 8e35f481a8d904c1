"""The paired-gain test that data-driven choices pass to replace their default."""

from __future__ import annotations

import math

from hydralm.stats import clear_gain, mean_and_se


def test_a_consistent_gain_is_clear_and_noise_is_not():
    assert clear_gain([0.1, 0.12, 0.09, 0.11])
    assert not clear_gain([0.3, -0.2, 0.25, -0.25, 0.1])
    assert clear_gain([0.05, 0.05])                       # no spread at all: any positive mean
    assert not clear_gain([0.0, 0.0]) and not clear_gain([-0.05, -0.05])


def test_fewer_than_two_gains_decide_nothing():
    assert not clear_gain([]) and not clear_gain([1.0])
    assert math.isnan(mean_and_se([1.0])[1]) and math.isnan(mean_and_se([])[0])


def test_mean_and_standard_error():
    mean, se = mean_and_se([1.0, 2.0, 3.0, 4.0])
    assert mean == 2.5 and abs(se - math.sqrt(5 / 3 / 4)) < 1e-12
