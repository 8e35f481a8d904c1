"""HeadCache: LRU order, one shared load per user, retries, the global fallback, invalidation."""

from __future__ import annotations

import asyncio
import random
import threading

import pytest

from hydralm.errors import ArtifactError, NotFoundError
from hydralm.scoring import HeadCache, RetryPolicy

FAST = RetryPolicy(attempts=3, backoff_s=0.0, max_backoff_s=0.0)


class Loads:
    """A loader over a dict of heads that records every call; `fail` maps a user to the errors
    its next calls raise, in order."""

    def __init__(self, heads: dict[str, str], fail: dict[str, list[Exception]] | None = None):
        self.heads, self.fail, self.calls = heads, fail or {}, []

    def user(self, user_id: str) -> str:
        self.calls.append(user_id)
        if self.fail.get(user_id):
            raise self.fail[user_id].pop(0)
        if user_id not in self.heads:
            raise NotFoundError(f"no head for user {user_id!r}")
        return self.heads[user_id]

    def global_head(self) -> str:
        self.calls.append("<global>")
        return "G"


def cache_of(loads: Loads, **kwargs) -> HeadCache[str]:
    kwargs.setdefault("retry", FAST)
    return HeadCache(loads.user, loads.global_head, rng=random.Random(0), **kwargs)


def test_lru_evicts_the_least_recently_used():
    loads = Loads({u: u.upper() for u in "abcd"})
    cache = cache_of(loads, capacity=2)

    async def run():
        await cache.get("a")
        await cache.get("b")
        await cache.get("a")          # a is now the most recent
        await cache.get("c")          # evicts b
        return cache.cached_users()

    assert asyncio.run(run()) == ["a", "c"]
    assert (cache.stats.evictions, cache.stats.hits, cache.stats.loads) == (1, 1, 3)


def test_concurrent_gets_share_one_load():
    loads = Loads({"u": "U"})
    cache = cache_of(loads)

    async def run():
        return await asyncio.gather(*(cache.get("u") for _ in range(20)))

    results = asyncio.run(run())
    assert loads.calls == ["u"]
    assert {(r.head, r.source) for r in results} == {("U", "user")}
    assert (cache.stats.misses, cache.stats.loads) == (20, 1)


def test_transient_errors_are_retried_then_succeed():
    loads = Loads({"u": "U"}, fail={"u": [OSError("reset"), TimeoutError("slow")]})
    cache = cache_of(loads)
    resolved = asyncio.run(cache.get("u"))
    assert (resolved.head, resolved.source) == ("U", "user")
    assert loads.calls == ["u", "u", "u"]
    assert (cache.stats.retries, cache.stats.load_failures) == (2, 0)


def test_an_outage_is_served_by_the_global_head_and_not_remembered():
    loads = Loads({"u": "U"}, fail={"u": [OSError("down")] * 3})
    cache = cache_of(loads)
    resolved = asyncio.run(cache.get("u"))
    assert (resolved.head, resolved.source, resolved.degraded) == ("G", "global", True)
    assert "u" not in cache and (cache.stats.load_failures, cache.stats.fallbacks) == (1, 1)
    resolved = asyncio.run(cache.get("u"))               # the storage is back
    assert (resolved.head, resolved.source, resolved.degraded) == ("U", "user", False)


def test_retries_exhausted_without_a_global_head_raise_artifact_error():
    loads = Loads({"u": "U"}, fail={"u": [OSError("down")] * 3})
    loads.global_head = lambda: (_ for _ in ()).throw(OSError("down too"))
    cache = cache_of(loads)
    with pytest.raises(ArtifactError, match="head of user 'u' failed after 3 attempt"):
        asyncio.run(cache.get("u"))
    assert "u" not in cache and cache.stats.load_failures == 2


def test_storage_errors_wrapped_in_artifact_errors_are_retried():
    wrapped = ArtifactError("S3 get of 'heads/x' failed: connection reset")
    wrapped.__cause__ = ConnectionResetError("reset by peer")     # how S3Storage raises them
    loads = Loads({"u": "U"}, fail={"u": [wrapped]})
    cache = cache_of(loads)
    assert asyncio.run(cache.get("u")).head == "U"
    assert (loads.calls, cache.stats.retries) == (["u", "u"], 1)


def test_verification_errors_are_not_retried():
    loads = Loads({"u": "U"}, fail={"u": [ArtifactError("checksum mismatch")]})
    cache = cache_of(loads)
    with pytest.raises(ArtifactError, match="checksum"):
        asyncio.run(cache.get("u"))
    assert loads.calls == ["u"]


def test_missing_head_is_served_by_the_global_head_and_remembered():
    loads = Loads({})
    cache = cache_of(loads)

    async def run():
        return [await cache.get("new") for _ in range(3)]

    results = asyncio.run(run())
    assert {(r.head, r.source) for r in results} == {("G", "global")}
    assert loads.calls == ["new", "<global>"]
    assert (cache.stats.fallbacks, cache.stats.hits) == (1, 2)


def test_invalidate_drops_entries_and_discards_loads_in_flight():
    started, release = threading.Event(), threading.Event()
    loads = Loads({"a": "A1", "b": "B1"})

    def gated(user_id: str) -> str:
        if user_id == "b":
            started.set()
            release.wait(5)
        return loads.user(user_id)

    cache = HeadCache(gated, loads.global_head, retry=FAST)

    async def run():
        await cache.get("a")
        pending = asyncio.ensure_future(cache.get("b"))
        assert await asyncio.to_thread(started.wait, 5)   # b's load is running in its thread
        assert cache.invalidate(["a"]) == 1
        release.set()
        first_b = await pending                  # answered, but from before the invalidation
        loads.heads.update(a="A2")
        return first_b.head, (await cache.get("a")).head, "b" in cache

    assert asyncio.run(run()) == ("B1", "A2", False)


def test_a_new_global_head_replaces_it_for_every_user_it_served():
    loads = Loads({"a": "A"})
    cache = cache_of(loads)

    async def run():
        await cache.get("a")
        await cache.get("new1")
        await cache.get("new2")
        dropped = cache.invalidate([], include_global=True)
        return dropped, cache.cached_users(), await cache.get("new1")

    dropped, left, again = asyncio.run(run())
    assert (dropped, left) == (2, ["a"])
    assert again.source == "global" and loads.calls.count("<global>") == 2


def test_events_reach_the_listener():
    seen: list[str] = []
    cache = cache_of(Loads({"a": "A"}), on_event=seen.append)

    async def run():
        await cache.get("a")
        await cache.get("a")
        await cache.get("zz")

    asyncio.run(run())
    assert seen == ["miss", "load", "hit", "miss", "fallback"]


@pytest.mark.parametrize("kwargs, message", [
    ({"capacity": 0}, "capacity must be at least 1, got 0"),
])
def test_bad_settings_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        cache_of(Loads({}), **kwargs)


@pytest.mark.parametrize("kwargs, message", [
    ({"attempts": 0}, "attempts must be at least 1, got 0"),
    ({"backoff_s": -1.0}, "backoffs must be >= 0"),
])
def test_bad_retry_policies_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RetryPolicy(**kwargs)


def test_a_head_fitted_on_an_older_base_is_served_by_the_global_head():
    """Between a retrain (new base) and the refit of a user's head the user has no head for the
    current base: the global head serves them, the response says so, nothing is counted failed."""
    from hydralm.errors import StaleHeadError

    stale = StaleHeadError("reranker head of user 'u' was fitted on base 'b1' but the "
                           "registry's current base is 'b2'; refit it on the current base")
    loads = Loads({"u": "U"}, fail={"u": [stale]})
    cache = cache_of(loads)
    resolved = asyncio.run(cache.get("u"))
    assert (resolved.head, resolved.source) == ("G", "global")
    assert loads.calls == ["u", "<global>"]
    assert (cache.stats.fallbacks, cache.stats.load_failures, cache.stats.retries) == (1, 0, 0)
