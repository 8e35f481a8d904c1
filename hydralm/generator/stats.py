"""Counters of one GeneratorClient (serving exports them to Prometheus)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

__all__ = ["GeneratorStats"]


@dataclass
class GeneratorStats:
    """What a client did. `calls` counts chat/complete calls the server answered (cache misses),
    `requests` every HTTP attempt, `retries` the attempts after a failed one, `errors` the calls
    that ended in a GeneratorCallError (`short_circuits` of them refused by the open circuit
    breaker without an attempt; `breaker_opens` counts its openings). Latencies are of
    successful HTTP requests."""

    calls: int = 0
    requests: int = 0
    retries: int = 0
    errors: int = 0
    short_circuits: int = 0
    breaker_opens: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s_sum: float = 0.0
    recent_latencies_s: deque[float] = field(default_factory=lambda: deque(maxlen=4096))

    def record_latency(self, seconds: float) -> None:
        self.latency_s_sum += seconds
        self.recent_latencies_s.append(seconds)

    def latency_quantile(self, q: float) -> float | None:
        """Nearest-rank quantile of the recent latencies in seconds; None before any request."""
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantile must be in [0, 1], got {q!r}")
        if not self.recent_latencies_s:
            return None
        ordered = sorted(self.recent_latencies_s)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def snapshot(self) -> dict[str, float | int | None]:
        return {
            "calls": self.calls, "requests": self.requests, "retries": self.retries,
            "errors": self.errors, "short_circuits": self.short_circuits,
            "breaker_opens": self.breaker_opens, "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens, "latency_s_sum": self.latency_s_sum,
            "latency_p50_s": self.latency_quantile(0.5),
            "latency_p99_s": self.latency_quantile(0.99),
        }
