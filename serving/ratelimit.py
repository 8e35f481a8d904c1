"""Per-API-key rate limits: requests per second and generator tokens per minute.

Each key has two token buckets. A request takes one request token before anything else runs (the
API-key check); an empty bucket is a 429 whose `Retry-After` says when the next token comes.
Generator tokens are known only once the answer is made, so a request is admitted while the key's
token bucket is not in debt, and its `usage.total_tokens` are taken afterwards (the bucket may go
below zero; the key then waits until it has refilled). The limits are set in the auth config
(`auth.rate_limit`, for every key) and per key in the key table (`rate_limit`, overriding it).

Buckets live in each ingress replica's memory: with R replicas behind Serve's router a key gets up
to R times its limits (set them divided by the replica count).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from pydantic import Field, model_validator

from hydralm.config import StrictModel

__all__ = ["RateLimit", "RateLimited", "RateLimiter", "TokenBucket"]

LimitKind = Literal["requests", "tokens"]


class RateLimit(StrictModel):
    """The limits of one API key; None: unlimited."""

    requests_per_s: float | None = Field(
        None, gt=0, le=1_000_000, description="Sustained requests per second (any route).")
    burst: int | None = Field(
        None, ge=1, le=1_000_000, description="Requests allowed at once after a quiet spell; "
                                              "None: max(1, requests_per_s).")
    tokens_per_min: int | None = Field(
        None, ge=1, le=10**12, description="Generator tokens (prompt + completion, as `usage` "
                                           "counts them) per minute.")

    @model_validator(mode="after")
    def _burst_needs_rate(self) -> RateLimit:
        if self.burst is not None and self.requests_per_s is None:
            raise ValueError("burst needs requests_per_s")
        return self


class TokenBucket:
    """`capacity` tokens, refilled at `rate` per second; `level` may go negative (a debt)."""

    def __init__(self, rate: float, capacity: float, now: float) -> None:
        self.rate, self.capacity = rate, capacity
        self.level, self._at = capacity, now

    def _refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self._at) * self.rate)
        self._at = now

    def try_take(self, amount: float, now: float) -> float:
        """Take `amount` and return 0, or take nothing and return the seconds until it can."""
        self._refill(now)
        if self.level >= amount:
            self.level -= amount
            return 0.0
        return (amount - self.level) / self.rate

    def wait_for_credit(self, now: float) -> float:
        """0 while the bucket is not in debt, else the seconds until it is not."""
        self._refill(now)
        return 0.0 if self.level > 0 else (1e-9 - self.level) / self.rate

    def spend(self, amount: float, now: float) -> None:
        self._refill(now)
        self.level -= amount


class RateLimited(Exception):
    """A key over one of its limits: which one, and when to retry."""

    def __init__(self, kind: LimitKind, limit: float, retry_after_s: float) -> None:
        unit = "requests per second" if kind == "requests" else "tokens per minute"
        super().__init__(f"rate limit reached on {unit} (limit {limit:g}); retry in "
                         f"{math.ceil(retry_after_s)} s")
        self.kind, self.limit, self.retry_after_s = kind, limit, retry_after_s


@dataclass
class _Buckets:
    limit: RateLimit
    requests: TokenBucket | None
    tokens: TokenBucket | None


class RateLimiter:
    """The buckets of every key seen by this replica (keys are few: the key table's)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[str, _Buckets] = {}
        self._lock = threading.Lock()

    def _of(self, key_id: str, limit: RateLimit, now: float) -> _Buckets:
        b = self._buckets.get(key_id)
        if b is None or b.limit != limit:
            rps, tpm = limit.requests_per_s, limit.tokens_per_min
            b = _Buckets(limit,
                         TokenBucket(rps, limit.burst or max(1.0, rps), now) if rps else None,
                         TokenBucket(tpm / 60.0, tpm, now) if tpm else None)
            self._buckets[key_id] = b
        return b

    def admit(self, key_id: str, limit: RateLimit) -> None:
        """Take one request; raise RateLimited when the key is over either limit."""
        with self._lock:
            now = self._clock()
            b = self._of(key_id, limit, now)
            if b.tokens is not None:
                wait = b.tokens.wait_for_credit(now)
                if wait > 0:
                    raise RateLimited("tokens", limit.tokens_per_min, wait)
            if b.requests is not None:
                wait = b.requests.try_take(1.0, now)
                if wait > 0:
                    raise RateLimited("requests", limit.requests_per_s, wait)

    def spend_tokens(self, key_id: str, limit: RateLimit, tokens: int) -> None:
        """Charge a finished request's generator tokens to the key."""
        if limit.tokens_per_min is None or tokens <= 0:
            return
        with self._lock:
            now = self._clock()
            self._of(key_id, limit, now).tokens.spend(tokens, now)
