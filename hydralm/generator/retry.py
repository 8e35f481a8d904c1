"""Retry timing: exponential backoff with full jitter, and the server's Retry-After."""

from __future__ import annotations

import random
import time
from email.utils import parsedate_to_datetime

__all__ = ["backoff_delay", "is_retryable_status", "parse_retry_after"]


def is_retryable_status(status: int) -> bool:
    """429 (rate limited) and every 5xx are worth another try; other 4xx are not."""
    return status == 429 or status >= 500


def backoff_delay(retry: int, base_s: float, cap_s: float, rng: random.Random) -> float:
    """Seconds to wait before retry number `retry` (1-based): uniform in
    [0, min(cap, base * 2**(retry-1))] ("full jitter"), so many clients hitting one overloaded
    server spread out instead of retrying in lockstep."""
    if retry < 1:
        raise ValueError(f"retry is 1-based, got {retry!r}")
    ceiling = min(cap_s, base_s * 2 ** min(retry - 1, 60))
    return rng.uniform(0.0, ceiling)


def parse_retry_after(value: str | None, cap_s: float, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delay in seconds or an HTTP date), clamped to
    [0, cap_s]; None when absent or unreadable (the caller then backs off on its own)."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:  # RFC 9110 dates are GMT; be lenient with a missing zone
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), cap_s)
