"""Scores pairs of many users at once: each model kind's base encoder held once, users' heads in
an LRU per kind, and one base forward pass per kind for everything in flight.

Cross-caller batching: `score_groups` may be called by many coroutines at once (e.g. one per Ray
Serve batch); their pairs are queued and the forward worker takes everything queued each time it
is free, so callers that arrive while a pass runs share the next one (continuous batching, no
timer). Passes run on one worker thread, so the event loop keeps taking requests meanwhile.

The bases run in `precision` ('auto': bf16 where the device has native bf16, else fp32; see
hydralm.model.precision); the heads always compute in fp32.

A user without a head of their own who comes with a history `profile` (PairGroup.profile) is
scored by a zero-fit head: the mixture of the training users' heads the base's router picks for
that history (hydralm/model/zero_fit.py), their heads taken from the same cache; the global head
serves when the base has no router or the history matches no training user. The outcome says
which head served ("user", "zero_fit" or "global").

Registry changes are picked up without a restart: at most every `poll_interval_s` the registry's
cheap `manifest_version()` is read; on a change, the cached users of the index shards whose file
changed are dropped (hydralm/scoring/registry_view.py), and
a new base replaces the encoders and starts fresh head caches (every old head belongs to the old
base). A head load that finds the registry already on a newer base refreshes and retries once.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

from hydralm.errors import HydraError
from hydralm.model import BaseEncoder, HeadState
from hydralm.model.precision import Precision, resolve_precision
from hydralm.model.zero_fit import Router
from hydralm.pipeline.interfaces import ModelKind, PairScores
from hydralm.scoring.forward import ForwardJob, MixtureHead, score_jobs
from hydralm.scoring.head_cache import CacheEvent, CacheStats, HeadCache, ResolvedHead, RetryPolicy
from hydralm.scoring.registry_view import KindSnapshot, RegistryView, StaleBaseError
from hydralm.scoring.types import MODEL_KINDS, PairGroup, RowScore, ScoreRow

__all__ = ["BatchScorer", "ForwardRecord"]

log = logging.getLogger(__name__)

CacheListener = Callable[[ModelKind, CacheEvent], None]
Outcome = PairScores | Exception


@dataclass
class _Served:
    """Everything served from one base version; replaced whole when the base changes."""

    base_version: str
    encoders: dict[ModelKind, BaseEncoder]
    snapshots: dict[ModelKind, KindSnapshot]
    caches: dict[ModelKind, HeadCache[HeadState]]
    router: Router | None = None          # the base's zero-fit router, if it has one


@dataclass
class _Pending:
    served: _Served
    kind: ModelKind
    jobs: list[ForwardJob]
    future: asyncio.Future[list[list[float]]]


@dataclass(frozen=True)
class ForwardRecord:
    """One forward pass: its kind, pairs, distinct heads and duration (for stats and tests)."""

    kind: ModelKind
    pairs: int
    heads: int
    seconds: float


class BatchScorer:
    """The scoring core, without Ray: `await score_groups(groups)` or `await score_rows(rows)`."""

    def __init__(self, registry, *, device: str = "cpu", cache_capacity: int = 1024,
                 poll_interval_s: float = 2.0, max_forward_pairs: int = 512,
                 coalesce: bool = True, retry: RetryPolicy | None = None,
                 on_cache_event: CacheListener | None = None,
                 kinds: Sequence[ModelKind] = MODEL_KINDS, history: int = 1024,
                 precision: Precision = "auto") -> None:
        if max_forward_pairs < 1:
            raise ValueError(f"max_forward_pairs must be at least 1, got {max_forward_pairs!r}")
        unknown = sorted(set(kinds) - set(MODEL_KINDS))
        if unknown or not kinds:
            raise ValueError(f"kinds must be a non-empty subset of {list(MODEL_KINDS)}, "
                             f"got {list(kinds)!r}")
        self.view = RegistryView(registry)
        self.device, self.cache_capacity = device, cache_capacity
        # the bases' number format, resolved once for this device (heads stay fp32)
        self.precision = resolve_precision(precision, device)
        self.poll_interval_s, self.max_forward_pairs = poll_interval_s, max_forward_pairs
        self.coalesce, self.kinds = coalesce, tuple(kinds)
        self._retry, self._on_cache_event = retry, on_cache_event
        self._served: _Served | None = None
        self._manifest_version: int | None = None
        self._checked_at = -math.inf
        self._refreshing = False
        self._load_lock = asyncio.Lock()
        self._pending: list[_Pending] = []
        self._worker: asyncio.Task | None = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="hydralm-forward")
        self.forwards: deque[ForwardRecord] = deque(maxlen=history)

    # -- loading and refreshing ------------------------------------------------------------------

    @property
    def base_version(self) -> str | None:
        return self._served.base_version if self._served else None

    def load(self) -> None:
        """Load the bases and set up the head caches now (blocking: e.g. in a replica's
        __init__, so the replica is ready when it says so)."""
        self._manifest_version = self.view.manifest_version()
        self._checked_at = time.monotonic()
        self._served = self._build()

    def check_ready(self) -> None:
        if self._served is None:
            raise RuntimeError("scorer has not loaded its bases yet: call load() first")

    def _build(self, snapshots: dict[ModelKind, KindSnapshot] | None = None) -> _Served:
        snapshots = snapshots or self.view.snapshots(self.kinds)
        version = snapshots[self.kinds[0]].base_version
        encoders, router = self.view.load_encoders(self.kinds, version, self.device)
        for encoder in encoders.values():
            encoder.set_precision(self.precision)
        caches = {kind: self._cache(kind, version) for kind in self.kinds}
        log.info("serving base %s (%s)%s", version, ", ".join(self.kinds),
                 f", zero-fit heads over {len(router.users)} training users" if router else "")
        return _Served(version, encoders, snapshots, caches, router)

    def _cache(self, kind: ModelKind, version: str) -> HeadCache[HeadState]:
        listener = self._on_cache_event
        return HeadCache(functools.partial(self.view.load_head, kind, base_version=version),
                         functools.partial(self.view.load_global_head, kind, version),
                         capacity=self.cache_capacity, retry=self._retry,
                         on_event=functools.partial(listener, kind) if listener else None)

    async def _loaded(self) -> _Served:
        if self._served is None:
            async with self._load_lock:
                if self._served is None:
                    await asyncio.to_thread(self.load)
        assert self._served is not None
        return self._served

    async def refresh(self, *, force: bool = False) -> bool:
        """Re-read the manifest if due (or `force`); True when something changed. Callers that
        come while another caller refreshes go on with the current state instead of waiting."""
        due = time.monotonic() - self._checked_at >= self.poll_interval_s
        if self._served is None or self._refreshing or not (due or force):
            return False
        self._refreshing = True
        try:
            return await self._refresh_now()
        except (HydraError, OSError) as exc:
            # A registry that cannot be read now must not fail requests the current state can
            # serve: keep it, and try again at the next poll.
            log.error("registry refresh failed; still serving base %s: %s",
                      self._served.base_version, exc)
            return False
        finally:
            self._refreshing = False

    async def _refresh_now(self) -> bool:
        self._checked_at = time.monotonic()   # also after a failed read: no retry per request
        version = await asyncio.to_thread(self.view.manifest_version)
        if version == self._manifest_version:
            return False
        snapshots = await asyncio.to_thread(self.view.snapshots, self.kinds)
        self._apply(snapshots)
        if snapshots[self.kinds[0]].base_version != self._served.base_version:
            self._served = await asyncio.to_thread(self._build, snapshots)
        self._manifest_version = version
        return True

    def _apply(self, snapshots: dict[ModelKind, KindSnapshot]) -> None:
        """Drop cached heads that changed (all of them when the base changed: see refresh)."""
        served = self._served
        assert served is not None
        for kind, new in snapshots.items():
            old = served.snapshots[kind]
            if new.base_version != old.base_version:
                continue
            dropped = served.caches[kind].invalidate(new.changed_users(old),
                                                     include_global=new.global_changed(old))
            served.snapshots[kind] = new
            log.info("%s heads changed; dropped %d cached", kind, dropped)

    # -- scoring ---------------------------------------------------------------------------------

    async def score_groups(self, groups: Sequence[PairGroup]) -> list[Outcome]:
        """One outcome per group, in order: its scores and head, or the error that stopped it
        (a head that fails to load fails only the groups of that user)."""
        await self.refresh()
        outcomes = await self._score_with(await self._loaded(), groups)
        stale = [i for i, o in enumerate(outcomes) if isinstance(o, StaleBaseError)]
        if stale and await self.refresh(force=True):
            retried = await self._score_with(await self._loaded(), [groups[i] for i in stale])
            for i, outcome in zip(stale, retried, strict=True):
                outcomes[i] = outcome
        return outcomes

    async def _score_with(self, served: _Served, groups: Sequence[PairGroup]) -> list[Outcome]:
        by_kind: dict[ModelKind, list[int]] = {}
        for i, group in enumerate(groups):
            if group.kind not in served.caches:
                raise ValueError(f"this scorer serves {list(self.kinds)}, got kind "
                                 f"{group.kind!r}")
            by_kind.setdefault(group.kind, []).append(i)
        results = await asyncio.gather(*(self._score_kind(served, kind, [groups[i] for i in idx])
                                         for kind, idx in by_kind.items()))
        outcomes: list[Outcome] = [None] * len(groups)  # type: ignore[list-item]
        for idx, kind_results in zip(by_kind.values(), results, strict=True):
            for i, outcome in zip(idx, kind_results, strict=True):
                outcomes[i] = outcome
        return outcomes

    async def _score_kind(self, served: _Served, kind: ModelKind,
                          groups: list[PairGroup]) -> list[Outcome]:
        resolved = await asyncio.gather(*(self._head_for(served, kind, g) for g in groups),
                                        return_exceptions=True)
        for r in resolved:
            if isinstance(r, BaseException) and not isinstance(r, Exception):
                raise r                      # cancellation and the like are not per-user errors
        live = [(i, r) for i, r in enumerate(resolved) if not isinstance(r, BaseException)]
        jobs = [ForwardJob(groups[i].firsts, groups[i].seconds, r.head) for i, r in live]
        scores = await self._compute(served, kind, jobs) if jobs else []
        outcomes: list[Outcome] = [r if isinstance(r, Exception) else None  # type: ignore[misc]
                                   for r in resolved]
        for (i, r), s in zip(live, scores, strict=True):
            outcomes[i] = PairScores(scores=s, head=r.source)
        return outcomes

    async def _head_for(self, served: _Served, kind: ModelKind,
                        group: PairGroup) -> ResolvedHead:
        """The user's own head; else (or with prefer="zero_fit") the zero-fit head of their
        profile; else the global head."""
        cache = served.caches[kind]
        if group.prefer == "user":
            resolved = await cache.get(group.user_id)
            if resolved.source == "user" or not group.profile or served.router is None:
                return resolved
        mixture = await self._zero_fit(served, kind, group)
        if mixture is None:
            return ResolvedHead(await cache.get_global(), "global")
        return ResolvedHead(mixture, "zero_fit")

    async def _zero_fit(self, served: _Served, kind: ModelKind,
                        group: PairGroup) -> MixtureHead | None:
        """The mixture of training users' heads the router picks for the group's profile (the
        user themself left out), over those whose own head loads; None when there is none."""
        if served.router is None or not group.profile:
            return None
        weights = served.router.mixture(group.profile, exclude=group.user_id, kind=kind)
        cache = served.caches[kind]
        found = await asyncio.gather(*(cache.get(user) for user, _ in weights))
        kept = [(r.head, w) for r, (_, w) in zip(found, weights, strict=True)
                if r.source == "user"]
        if not kept:
            return None
        total = sum(w for _, w in kept)
        return MixtureHead(tuple(h for h, _ in kept), tuple(w / total for _, w in kept))

    async def score_rows(self, rows: Sequence[ScoreRow]) -> list[RowScore]:
        """Rows of many users and both kinds; raises the first error of any row's head."""
        keys: dict[tuple[ModelKind, str], list[int]] = {}
        for i, row in enumerate(rows):
            keys.setdefault((row.kind, row.user_id), []).append(i)
        groups = [PairGroup(kind, user, tuple(rows[i].first for i in idx),
                            tuple(rows[i].second for i in idx))
                  for (kind, user), idx in keys.items()]
        out: list[RowScore] = [None] * len(rows)  # type: ignore[list-item]
        for idx, outcome in zip(keys.values(), await self.score_groups(groups), strict=True):
            if isinstance(outcome, Exception):
                raise outcome
            for i, score in zip(idx, outcome.scores, strict=True):
                out[i] = RowScore(score, outcome.head)
        return out

    async def _compute(self, served: _Served, kind: ModelKind,
                       jobs: list[ForwardJob]) -> list[list[float]]:
        loop = asyncio.get_running_loop()
        if not self.coalesce:
            return await loop.run_in_executor(self._executor, self._forward, served, kind, jobs)
        pending = _Pending(served, kind, jobs, loop.create_future())
        self._pending.append(pending)
        if self._worker is None or self._worker.done():
            self._worker = loop.create_task(self._drain())
        return await pending.future

    async def _drain(self) -> None:
        """Run everything queued, one pass per (base, kind), until the queue stays empty."""
        loop = asyncio.get_running_loop()
        while self._pending:
            taken, self._pending = self._pending, []
            passes: dict[tuple[int, ModelKind], list[_Pending]] = {}
            for p in taken:
                passes.setdefault((id(p.served), p.kind), []).append(p)
            for batch in passes.values():
                jobs = [job for p in batch for job in p.jobs]
                try:
                    scores = await loop.run_in_executor(
                        self._executor, self._forward, batch[0].served, batch[0].kind, jobs)
                except Exception as exc:     # handed to every caller of this pass
                    for p in batch:
                        if not p.future.done():
                            p.future.set_exception(exc)
                    continue
                offset = 0
                for p in batch:
                    if not p.future.done():
                        p.future.set_result(scores[offset:offset + len(p.jobs)])
                    offset += len(p.jobs)

    def _forward(self, served: _Served, kind: ModelKind,
                 jobs: list[ForwardJob]) -> list[list[float]]:
        start = time.perf_counter()
        scores = score_jobs(served.encoders[kind], jobs, max_pairs=self.max_forward_pairs,
                            device=self.device)
        self.forwards.append(ForwardRecord(kind, sum(len(j.firsts) for j in jobs),
                                           len({id(j.head) for j in jobs}),
                                           time.perf_counter() - start))
        return scores

    # -- reporting -------------------------------------------------------------------------------

    def encoder(self, kind: ModelKind) -> BaseEncoder:
        """The base encoder serving `kind` now."""
        self.check_ready()
        return self._served.encoders[kind]  # type: ignore[union-attr]

    def cache(self, kind: ModelKind) -> HeadCache[HeadState]:
        self.check_ready()
        return self._served.caches[kind]  # type: ignore[union-attr]

    def cache_stats(self) -> dict[ModelKind, CacheStats]:
        return {k: c.stats for k, c in self._served.caches.items()} if self._served else {}

    def report(self) -> dict:
        """Plain data for stats endpoints: base, recent passes, each cache's counters."""
        return {
            "base_version": self.base_version,
            "manifest_version": self._manifest_version,
            "max_forward_pairs": self.max_forward_pairs,
            "precision": self.precision,
            "forwards": [asdict(f) for f in self.forwards],
            "caches": {kind: {**asdict(cache.stats), "size": len(cache),
                              "capacity": cache.capacity, "users": cache.cached_users()}
                       for kind, cache in (self._served.caches.items() if self._served else [])},
        }

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
