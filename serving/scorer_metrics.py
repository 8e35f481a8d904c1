"""The Scorer's Prometheus metrics (Ray Serve's metrics API, exported by Ray's metrics agent with
the replica's deployment/replica tags added): batch sizes, distinct users per batch, head cache
events per model kind, and score latency."""

from __future__ import annotations

from ray.serve import metrics

from hydralm.pipeline.interfaces import ModelKind
from hydralm.scoring import CacheEvent

__all__ = ["ScorerMetrics"]

_SIZE_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]
_LATENCY_BUCKETS_S = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]


class ScorerMetrics:
    """One instance per replica; every method is cheap enough for the request path."""

    def __init__(self) -> None:
        self._batch_requests = metrics.Histogram(
            "hydralm_scorer_batch_requests", "Requests per @serve.batch call.",
            boundaries=_SIZE_BUCKETS)
        self._batch_users = metrics.Histogram(
            "hydralm_scorer_batch_distinct_users",
            "Distinct (kind, user) heads per @serve.batch call: above 1 means cross-user batching.",
            boundaries=_SIZE_BUCKETS)
        self._batch_pairs = metrics.Histogram(
            "hydralm_scorer_batch_pairs", "Pairs per @serve.batch call.", boundaries=_SIZE_BUCKETS)
        self._cache = metrics.Counter(
            "hydralm_scorer_head_cache_events",
            "Head cache events: hit, miss, load, eviction, load_failure, retry, fallback.",
            tag_keys=("kind", "event"))
        self._latency = metrics.Histogram(
            "hydralm_scorer_score_latency_seconds",
            "Time from a score call entering its batch to its scores.",
            boundaries=_LATENCY_BUCKETS_S, tag_keys=("kind",))

    def batch(self, requests: int, users: int, pairs: int) -> None:
        self._batch_requests.observe(requests)
        self._batch_users.observe(users)
        self._batch_pairs.observe(pairs)

    def cache_event(self, kind: ModelKind, event: CacheEvent) -> None:
        self._cache.inc(tags={"kind": kind, "event": event})

    def latency(self, kind: ModelKind, seconds: float) -> None:
        self._latency.observe(seconds, tags={"kind": kind})
