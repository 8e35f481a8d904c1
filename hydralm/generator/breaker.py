"""A circuit breaker in front of the generator: a generator that is down costs one fast error per
call instead of every caller's full retry budget.

    closed --(failure_threshold consecutive failed attempts)--> open
    open   --(cooldown_s passed)--> half_open: up to half_open_probes attempts go through
    half_open --(a probe succeeds)--> closed;  --(a probe fails)--> open again (a fresh cool-down)

A failed attempt is one the client would retry (timeout, dropped connection, 429/5xx, malformed
body); any answer that shows the server alive (a 2xx, or a 4xx refusing this request) counts as a
success. While the breaker is open, `before_attempt` raises `BreakerOpen` without touching the
network. The breaker is shared by every call of one client and is thread-safe.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Literal

from hydralm.generator.config import CircuitBreakerConfig

__all__ = ["BreakerOpen", "BreakerState", "CircuitBreaker"]

log = logging.getLogger(__name__)

BreakerState = Literal["closed", "open", "half_open"]


class BreakerOpen(Exception):
    """An attempt refused because the breaker is open; `retry_in_s` until the next probe."""

    def __init__(self, failures: int, retry_in_s: float) -> None:
        super().__init__(f"circuit breaker open after {failures} consecutive failed attempts; "
                         f"failing fast for another {retry_in_s:.1f}s")
        self.failures, self.retry_in_s = failures, retry_in_s


class CircuitBreaker:
    """Counts consecutive failed attempts and refuses attempts while open (see module doc)."""

    def __init__(self, config: CircuitBreakerConfig,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._clock = clock
        self._lock = threading.Lock()
        self._state: BreakerState = "closed"
        self._failures = 0          # consecutive failed attempts
        self._opened_at = 0.0
        self._probes = 0            # half-open attempts in flight
        self.opens = 0              # times the breaker opened (for stats and tests)

    @property
    def state(self) -> BreakerState:
        with self._lock:
            self._maybe_half_open()
            return self._state

    def before_attempt(self) -> None:
        """Let an attempt through, or raise BreakerOpen. Each attempt let through must end in
        exactly one of record_success / record_failure / abandon."""
        if not self.config.enabled:
            return
        with self._lock:
            self._maybe_half_open()
            if self._state == "closed":
                return
            if self._state == "half_open" and self._probes < self.config.half_open_probes:
                self._probes += 1
                return
            retry_in = max(0.0, self._opened_at + self.config.cooldown_s - self._clock())
            raise BreakerOpen(self._failures, retry_in)

    def record_success(self) -> None:
        with self._lock:
            if self._state != "closed":
                log.info("generator circuit breaker closed: a probe succeeded")
            self._state, self._failures, self._probes = "closed", 0, 0

    def record_failure(self) -> None:
        with self._lock:
            self._failures += 1
            if self._state == "half_open":
                self._probes = max(0, self._probes - 1)
                self._open("a half-open probe failed")
            elif self._state == "closed" and self._failures >= self.config.failure_threshold:
                self._open(f"{self._failures} consecutive attempts failed")

    def abandon(self) -> None:
        """An attempt let through ended without an answer either way (the caller was
        cancelled): free its probe slot, change nothing else."""
        with self._lock:
            if self._state == "half_open":
                self._probes = max(0, self._probes - 1)

    def _open(self, why: str) -> None:
        if not self.config.enabled:
            return
        self._state, self._opened_at, self._probes = "open", self._clock(), 0
        self.opens += 1
        log.warning("generator circuit breaker open (%s): failing fast for %.1fs", why,
                    self.config.cooldown_s)

    def _maybe_half_open(self) -> None:
        if self._state == "open" and self._clock() - self._opened_at >= self.config.cooldown_s:
            self._state, self._probes = "half_open", 0
