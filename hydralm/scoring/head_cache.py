"""An LRU of one model kind's per-user heads: loads deduplicated, retried, verified; unseen users
fall back to the global head and the caller learns which head served. A user whose head cannot be
read (storage down after the retries) is served by the global head too, without caching that
answer, so the user's own head comes back with the storage.

Loading goes through two injected callables (usually bound to a `hydralm.artifacts.Registry`), so
the cache knows nothing about storage: `load_user(user_id)` returns the user's verified head or
raises `NotFoundError` when the user has none; `load_global()` returns the global head.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import OrderedDict
from collections.abc import Callable, Container
from dataclasses import dataclass, field
from typing import Generic, Literal, TypeVar

from hydralm.errors import ArtifactError, NotFoundError
from hydralm.generator.retry import backoff_delay

__all__ = ["CacheEvent", "CacheStats", "HeadCache", "ResolvedHead", "RetryPolicy"]

log = logging.getLogger(__name__)

H = TypeVar("H")
HeadSource = Literal["user", "zero_fit", "global"]
CacheEvent = Literal["hit", "miss", "load", "eviction", "load_failure", "retry", "fallback"]

_COUNTERS: dict[str, str] = {"hit": "hits", "miss": "misses", "load": "loads",
                             "eviction": "evictions", "load_failure": "load_failures",
                             "retry": "retries", "fallback": "fallbacks"}


@dataclass(frozen=True)
class ResolvedHead(Generic[H]):
    """The head that serves a user, and whether it is the user's own or the global one (the
    BatchScorer also builds one for a zero-fit mixture, which the cache never holds)."""

    head: H
    source: HeadSource
    degraded: bool = False      # the global head stood in for a head the storage could not give


def _default_transient() -> tuple[type[BaseException], ...]:
    """Errors of storage I/O worth another try: OS-level I/O (local disk, sockets) and botocore's
    connection and read failures, which S3 storage re-raises wrapped in an ArtifactError."""
    from botocore.exceptions import BotoCoreError

    return (OSError, TimeoutError, BotoCoreError)


@dataclass(frozen=True)
class RetryPolicy:
    """How a head load meets transient storage errors: `attempts` tries in all, with full-jitter
    exponential backoff between them. An error is transient when it, or an error it was raised
    from (`__cause__`), is one of `transient`; anything else (a checksum or base-version mismatch:
    an `ArtifactError` of its own) will not get better by asking again and is not retried."""

    attempts: int = 3
    backoff_s: float = 0.05
    max_backoff_s: float = 1.0
    transient: tuple[type[BaseException], ...] = field(default_factory=_default_transient)

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts must be at least 1, got {self.attempts!r}")
        if self.backoff_s < 0 or self.max_backoff_s < 0:
            raise ValueError(f"backoffs must be >= 0, got {self.backoff_s!r}, "
                             f"{self.max_backoff_s!r}")

    def is_transient(self, exc: BaseException) -> bool:
        seen: BaseException | None = exc
        for _ in range(8):          # a cause chain is short; the bound guards against cycles
            if seen is None:
                return False
            if isinstance(seen, self.transient):
                return True
            seen = seen.__cause__
        return False


@dataclass
class CacheStats:
    """Plain counters, read by the serving layer's metrics exporter and by tests.

    A `hit` is a request answered from the cache (a user's head or a remembered fallback); a
    `miss` needed a load or joined one already running. `loads` counts user heads read from the
    registry, `fallbacks` users found to have none (served by the global head), so
    misses - loads - fallbacks is the number of waits that shared another request's load."""

    hits: int = 0
    misses: int = 0
    loads: int = 0
    evictions: int = 0
    load_failures: int = 0
    retries: int = 0
    fallbacks: int = 0


class HeadCache(Generic[H]):
    """LRU of `capacity` users' resolved heads (the user's own, or the global one for a user who
    has none: remembered too, so unseen users do not hit storage on every request).

    `invalidate()` drops entries (e.g. when the registry's manifest changes); a load that started
    before an invalidation is returned to its waiters but not cached, so a stale head never
    outlives the invalidation that should have removed it."""

    def __init__(self, load_user: Callable[[str], H], load_global: Callable[[], H], *,
                 capacity: int = 1024, retry: RetryPolicy | None = None,
                 on_event: Callable[[CacheEvent], None] | None = None,
                 rng: random.Random | None = None) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity!r}")
        self.capacity = capacity
        self.stats = CacheStats()
        self._load_user, self._load_global = load_user, load_global
        self._retry = retry or RetryPolicy()
        self._on_event = on_event
        self._rng = rng or random.Random()
        self._entries: OrderedDict[str, ResolvedHead[H]] = OrderedDict()
        self._inflight: dict[str, asyncio.Future[ResolvedHead[H]]] = {}
        self._global: asyncio.Future[H] | None = None
        self._generation = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, user_id: object) -> bool:
        return user_id in self._entries

    def cached_users(self) -> list[str]:
        """User ids in the cache, least recently used first."""
        return list(self._entries)

    async def get(self, user_id: str) -> ResolvedHead[H]:
        """The head serving `user_id`; concurrent calls for one user share one load."""
        entry = self._entries.get(user_id)
        if entry is not None:
            self._entries.move_to_end(user_id)
            self._count("hit")
            return entry
        self._count("miss")
        pending = self._inflight.get(user_id)
        if pending is None:
            pending = asyncio.get_running_loop().create_future()
            self._inflight[user_id] = pending
            asyncio.get_running_loop().create_task(
                self._resolve(user_id, pending, self._generation))
        # shield: one waiter being cancelled must not cancel the load the others share
        return await asyncio.shield(pending)

    async def get_global(self) -> H:
        """The global head, loaded once (deduplicated and retried like a user's head)."""
        if self._global is None:
            self._global = asyncio.get_running_loop().create_future()
            asyncio.get_running_loop().create_task(self._load_global_into(self._global))
        future = self._global
        try:
            return await asyncio.shield(future)
        except BaseException:
            if self._global is future and future.done():
                self._global = None  # a failed global load is retried by the next request
            raise

    def invalidate(self, user_ids: Container[str] | None = None, *,
                   include_global: bool = False) -> int:
        """Drop the cached users in `user_ids` (all when None; any container: a set, or a
        membership test such as the users of changed index shards), and with `include_global`
        the global head and every user it was serving; return how many entries were dropped."""
        self._generation += 1
        drop = set(self._entries) if user_ids is None else {u for u in self._entries
                                                            if u in user_ids}
        if include_global:
            self._global = None
            drop |= {u for u, e in self._entries.items() if e.source == "global"}
        for user_id in drop:
            del self._entries[user_id]
        return len(drop)

    async def _resolve(self, user_id: str, pending: asyncio.Future[ResolvedHead[H]],
                       generation: int) -> None:
        try:
            resolved = await self._load_resolved(user_id)
        except BaseException as exc:  # handed to every waiter, never swallowed
            if not pending.done():
                pending.set_exception(exc)
            pending.exception()  # mark retrieved: waiters may all have been cancelled
            return
        finally:
            self._inflight.pop(user_id, None)
        if generation == self._generation and not resolved.degraded:
            self._insert(user_id, resolved)
        pending.set_result(resolved)

    async def _load_resolved(self, user_id: str) -> ResolvedHead[H]:
        try:
            head = await self._with_retries(self._load_user, user_id)
        except NotFoundError:
            self._count("fallback")
            return ResolvedHead(await self.get_global(), "global")
        except ArtifactError as exc:
            if not self._retry.is_transient(exc):
                raise       # a corrupt head or a base-version mismatch: the error
            try:
                head = await self.get_global()
            except Exception:
                raise exc from None
            self._count("fallback")
            log.warning("serving user %r with the global head: %s", user_id, exc)
            return ResolvedHead(head, "global", degraded=True)
        self._count("load")
        return ResolvedHead(head, "user")

    async def _load_global_into(self, future: asyncio.Future[H]) -> None:
        try:
            head = await self._with_retries(self._load_global)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()
            return
        future.set_result(head)

    async def _with_retries(self, load: Callable[..., H], *args: str) -> H:
        policy = self._retry
        for attempt in range(1, policy.attempts + 1):
            try:
                return await asyncio.to_thread(load, *args)
            except NotFoundError:
                raise
            except Exception as exc:
                if not policy.is_transient(exc):
                    self._count("load_failure")
                    raise
                if attempt == policy.attempts:
                    self._count("load_failure")
                    what = f"user {args[0]!r}" if args else "the global head"
                    raise ArtifactError(f"loading the head of {what} failed after {attempt} "
                                        f"attempt(s): {exc}") from exc
                self._count("retry")
                delay = backoff_delay(attempt, policy.backoff_s, policy.max_backoff_s, self._rng)
                log.warning("head load %s failed (%s); retry %d in %.3fs", args, exc, attempt,
                            delay)
                await asyncio.sleep(delay)
        raise AssertionError("unreachable: the loop returns or raises")

    def _insert(self, user_id: str, resolved: ResolvedHead[H]) -> None:
        self._entries[user_id] = resolved
        self._entries.move_to_end(user_id)
        while len(self._entries) > self.capacity:
            evicted, _ = self._entries.popitem(last=False)
            log.debug("evicted head of user %s", evicted)
            self._count("eviction")

    def _count(self, event: CacheEvent) -> None:
        attr = _COUNTERS[event]
        setattr(self.stats, attr, getattr(self.stats, attr) + 1)
        if self._on_event is not None:
            self._on_event(event)
