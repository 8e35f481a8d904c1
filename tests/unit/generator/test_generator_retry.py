"""Backoff timing and Retry-After parsing (pure functions)."""

from __future__ import annotations

import random
from email.utils import formatdate

import pytest

from hydralm.generator.retry import backoff_delay, is_retryable_status, parse_retry_after


@pytest.mark.parametrize("retry, ceiling", [(1, 0.5), (2, 1.0), (3, 2.0), (5, 8.0), (9, 10.0),
                                            (200, 10.0)])
def test_full_jitter_stays_under_the_exponential_ceiling(retry, ceiling):
    rng = random.Random(7)
    delays = [backoff_delay(retry, 0.5, 10.0, rng) for _ in range(500)]
    assert all(0.0 <= d <= ceiling for d in delays)
    assert max(delays) > 0.8 * ceiling  # spread over the whole range, not a fixed step


def test_backoff_rejects_a_zero_retry():
    with pytest.raises(ValueError, match="got 0"):
        backoff_delay(0, 0.5, 10.0, random.Random(0))


NOW = 1_700_000_000.0


@pytest.mark.parametrize("header, expected", [
    (None, None),
    ("", None),
    ("3", 3.0),
    ("1.5", 1.5),
    ("-4", 0.0),
    ("999", 30.0),
    ("soon", None),
    ("nan", None),
    (formatdate(NOW + 12, usegmt=True), 12.0),
    (formatdate(NOW - 60, usegmt=True), 0.0),
    (formatdate(NOW + 3600, usegmt=True), 30.0),
])
def test_retry_after_seconds_or_http_date_capped(header, expected):
    assert parse_retry_after(header, cap_s=30.0, now=NOW) == expected


@pytest.mark.parametrize("status, retryable", [(429, True), (500, True), (503, True),
                                               (400, False), (401, False), (404, False),
                                               (422, False)])
def test_which_statuses_are_retried(status, retryable):
    assert is_retryable_status(status) is retryable
