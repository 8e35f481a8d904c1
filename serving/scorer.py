"""The Scorer deployment: the shared bases once per replica, users' heads multiplexed, and requests
of many different users batched through one base forward pass.

Routing and batching, and why they are split this way: `@serve.batch` splits every batch by
multiplexed model id, so using the user id as that id would give one batch per user. Instead the
multiplexed id is the user's *bucket* (a stable hash of the user id modulo `num_buckets`):

- Serve routes a bucket's requests to the replicas that hold it, so a user keeps meeting the same
  replica and its head stays warm in that replica's LRU (`HeadCache`); "loading" a bucket only
  marks it held, so a replica can hand a bucket over for free.
- `@serve.batch` collects the requests of all users of a bucket; batches of the different buckets
  a replica holds reach `BatchScorer` concurrently and are merged into its next forward pass, so
  one base forward serves every user in flight on the replica, each row with its own head.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, deque
from typing import Any

import torch
from ray import serve
from ray.exceptions import RayActorError
from ray.serve.exceptions import ReplicaUnavailableError
from ray.serve.handle import DeploymentHandle

from hydralm.artifacts import Registry
from hydralm.pipeline.interfaces import HeadChoice, ModelKind, PairScorer, PairScores, Profile
from hydralm.scoring import BatchScorer, PairGroup, RetryPolicy, user_bucket
from serving.scorer_config import ScorerArgs
from serving.scorer_metrics import ScorerMetrics

__all__ = ["RemotePairScorer", "Scorer", "build_scorer"]

log = logging.getLogger(__name__)

_RECENT = 1024  # batches remembered for stats()


def _pairs_in(groups: list[PairGroup]) -> int:
    """@serve.batch counts a batch's size in pairs: what the forward pass costs."""
    return sum(len(g) for g in groups)


@serve.deployment
class Scorer:
    """Scores (first, second) pairs with a user's head of the reranker or the adapter."""

    def __init__(self, args: dict[str, Any] | None = None) -> None:
        self.args = ScorerArgs.from_dict(args, source="scorer args")
        torch.set_num_threads(self.args.threads())
        context = serve.get_replica_context()
        self.replica = context.replica_id.unique_id if context else "local"
        self.metrics = ScorerMetrics()
        self.scorer = BatchScorer(
            Registry(self.args.resolved_registry_uri()), device=self._device(),
            cache_capacity=self.args.head_cache_capacity,
            poll_interval_s=self.args.poll_interval_s,
            max_forward_pairs=self.args.forward_pairs(self._device()),
            precision=self.args.precision,
            retry=RetryPolicy(attempts=self.args.load_attempts),
            on_cache_event=self.metrics.cache_event)
        self.scorer.load()          # bases and global heads now: ready means ready to score
        self.held_buckets: dict[str, object] = {}
        self._recent: deque[tuple[int, int, int]] = deque(maxlen=_RECENT)
        self._requests_by_bucket: Counter[str] = Counter()
        self._bucket_loads = 0
        # Decorated here, not on the class, so the limits come from ScorerArgs.
        self._hold_bucket = serve.multiplexed(
            max_num_models_per_replica=self.args.buckets_per_replica())(self._bucket_loader())
        self._batched = serve.batch(
            max_batch_size=self.args.max_batch_size,
            batch_wait_timeout_s=self.args.batch_wait_timeout_s,
            max_concurrent_batches=self.args.max_concurrent_batches,
            batch_size_fn=_pairs_in)(self._score_batch)
        log.info("Scorer replica %s: registry %s, %d buckets (holds %d), device %s, %s",
                 self.replica, self.args.resolved_registry_uri(), self.args.num_buckets,
                 self.args.buckets_per_replica(), self._device(), self.scorer.precision)

    def _device(self) -> str:
        if self.args.device == "auto":
            return "cuda" if self.args.num_gpus > 0 and torch.cuda.is_available() else "cpu"
        return self.args.device

    def _bucket_loader(self):
        held = self.held_buckets

        class _Held:
            """What the multiplexing LRU holds per bucket; Serve calls __del__ on eviction (and
            the garbage collector may call it again later: only the current holder counts)."""

            def __init__(self, bucket: str) -> None:
                self.bucket = bucket
                held[bucket] = self

            def __del__(self) -> None:
                if held.get(self.bucket) is self:
                    del held[self.bucket]

        async def hold_bucket(bucket: str) -> _Held:
            self._bucket_loads += 1     # Serve calls this only for a bucket not held here
            return _Held(bucket)

        return hold_bucket

    async def score(self, kind: ModelKind, user_id: str, firsts: list[str],
                    seconds: list[str], *, profile: Profile | None = None,
                    prefer: HeadChoice = "user") -> PairScores:
        """Scores of the pairs with the user's head (for a user without one: the zero-fit head
        of their history `profile`, else the global head)."""
        group = PairGroup.of(kind, user_id, firsts, seconds, profile, prefer)
        bucket = serve.get_multiplexed_model_id()
        expected = user_bucket(user_id, self.args.num_buckets)
        if bucket != expected:
            raise ValueError(f"user {user_id!r} belongs to bucket {expected!r}, got request routed "
                             f"as {bucket!r}: call through RemotePairScorer")
        await self._hold_bucket(bucket)
        self._requests_by_bucket[bucket] += 1
        start = time.perf_counter()
        # a call larger than a batch goes in as several (Serve refuses an item above the limit)
        parts = await asyncio.gather(*(self._batched(part)
                                       for part in group.split(self.args.max_batch_size)))
        self.metrics.latency(kind, time.perf_counter() - start)
        for part in parts:
            if isinstance(part, Exception):
                raise part
        return PairScores(scores=[s for part in parts for s in part.scores], head=parts[0].head)

    async def _score_batch(self, groups: list[PairGroup]) -> list[PairScores | Exception]:
        users = len({(g.kind, g.user_id) for g in groups})
        pairs = _pairs_in(groups)
        self._recent.append((len(groups), users, pairs))
        self.metrics.batch(len(groups), users, pairs)
        return await self.scorer.score_groups(groups)

    async def stats(self) -> dict[str, Any]:
        """This replica's view, for tests and operators: recent @serve.batch calls as
        [requests, distinct users, pairs], requests per bucket, the buckets it holds now, and the
        scorer's report (base version, recent forward passes, head caches). `bucket_loads`
        counts buckets this replica had to take on: requests routed to a replica that did not
        hold their bucket."""
        return {
            "replica": self.replica,
            "batches": [list(b) for b in self._recent],
            "requests_by_bucket": dict(self._requests_by_bucket),
            "held_buckets": sorted(self.held_buckets),
            "bucket_loads": self._bucket_loads,
            **self.scorer.report(),
        }

    async def reset_stats(self) -> None:
        """Forget the recent batches and forward passes (a benchmark's measured window starts)."""
        self._recent.clear()
        self.scorer.forwards.clear()

    async def check_health(self) -> None:
        self.scorer.check_ready()


class RemotePairScorer(PairScorer):
    """`PairScorer` over a Scorer deployment handle: each call is routed by the user's bucket.
    Scoring is idempotent, so a call caught on a replica that died is sent once more (Serve routes
    it to a live replica); a second failure reaches the caller (HTTP 503)."""

    def __init__(self, handle: DeploymentHandle, num_buckets: int) -> None:
        if num_buckets < 1:
            raise ValueError(f"num_buckets must be at least 1, got {num_buckets!r}")
        self.handle, self.num_buckets = handle, num_buckets

    async def score(self, kind: ModelKind, user_id: str, firsts: list[str],
                    seconds: list[str], *, profile: Profile | None = None,
                    prefer: HeadChoice = "user") -> PairScores:
        bucket = user_bucket(user_id, self.num_buckets)
        routed = self.handle.options(multiplexed_model_id=bucket)
        args = (kind, user_id, list(firsts), list(seconds))
        try:
            return await routed.score.remote(*args, profile=profile, prefer=prefer)
        except (RayActorError, ReplicaUnavailableError) as exc:
            log.warning("scorer replica lost mid-call (%s); retrying once", type(exc).__name__)
            return await routed.score.remote(*args, profile=profile, prefer=prefer)


def build_scorer(args: ScorerArgs | dict[str, Any]) -> serve.Application:
    """The bound Scorer deployment, options from `args` (validated first)."""
    if not isinstance(args, ScorerArgs):
        args = ScorerArgs.from_dict(args, source="scorer args")
    return Scorer.options(**args.deployment_options()).bind(args.model_dump(mode="json"))
