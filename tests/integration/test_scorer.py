"""The Scorer deployment on a local Ray Serve: cross-user batches, bucket routing that keeps users'
heads warm, LRU eviction at capacity, and new heads picked up while serving.

One deployment (2 replicas, 4 buckets of which each replica holds at most 2, head cache of 8
users per kind) on a registry of MiniLM bases with random heads serves every test here, in file
order.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from hydralm.artifacts import Registry
from hydralm.scoring import publish_random_registry, random_heads, user_bucket

pytestmark = pytest.mark.integration

CAPACITY, BUCKETS, REPLICAS = 8, 4, 2


def _two_per_bucket() -> list[str]:
    """Two users in each bucket: every bucket is in use, so with two buckets per replica each
    bucket can only settle on one replica."""
    names = (f"user-{i}" for i in range(1000))
    chosen: dict[str, list[str]] = {f"b{b}": [] for b in range(BUCKETS)}
    while any(len(v) < 2 for v in chosen.values()):
        name = next(names)
        if len(chosen[user_bucket(name, BUCKETS)]) < 2:
            chosen[user_bucket(name, BUCKETS)].append(name)
    return [u for users in chosen.values() for u in users]


USERS = _two_per_bucket()                         # fit the cache: routing must keep them warm
MORE = [f"later-{i}" for i in range(64)]         # overflow it: evictions
ITEMS = [f"history item {i}: a review of a film about trains and rivers" for i in range(10)]


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> Registry:
    registry = Registry(str(tmp_path_factory.mktemp("scorer-registry")))
    publish_random_registry(registry, USERS + MORE[:4], seed=3)
    return registry


@pytest.fixture(scope="module")
def scorer(serve_http_port, registry):
    from ray import serve

    from serving.scorer import RemotePairScorer, build_scorer
    from serving.scorer_config import ScorerArgs

    args = ScorerArgs(registry_uri=registry.storage.uri, num_replicas=REPLICAS, num_cpus=0.5,
                      torch_threads=1, num_buckets=BUCKETS, max_buckets_per_replica=2,
                      head_cache_capacity=CAPACITY,
                      batch_wait_timeout_s=0.05, poll_interval_s=0.5,
                      # exact comparisons across calls: in bf16 a pair's score moves ~1e-3 with
                      # the padded length of the call it lands in (tests/unit/model/test_precision.py
                      # bounds that difference)
                      precision="fp32")
    handle = serve.run(build_scorer(args), name="scorer-test", route_prefix=None)
    try:
        yield handle, RemotePairScorer(handle, BUCKETS)
    finally:
        serve.delete("scorer-test")


def run(coro):
    return asyncio.run(coro)


async def replica_stats(handle, deadline_s: float = 30.0) -> dict[str, dict]:
    """stats() of every replica (calls land on random replicas: ask until all have answered)."""
    seen: dict[str, dict] = {}
    end = time.monotonic() + deadline_s
    while len(seen) < REPLICAS:
        assert time.monotonic() < end, f"only replicas {sorted(seen)} answered stats()"
        stats = await handle.stats.remote()
        seen[stats["replica"]] = stats
    return seen


async def rerank_all(client, users) -> list:
    return await asyncio.gather(*(client.score("reranker", u, [f"query of {u}"] * 10, ITEMS)
                                  for u in users))


def head_reads(stats: dict[str, dict]) -> int:
    """Registry reads of user heads (and fallbacks to the global head) over all replicas."""
    return sum(c["loads"] + c["fallbacks"] for s in stats.values() for c in s["caches"].values())


def test_concurrent_users_share_batches_and_forward_passes(scorer):
    handle, client = scorer
    results = run(rerank_all(client, USERS * 2))
    assert all(r.head == "user" and len(r.scores) == 10 for r in results)
    stats = run(replica_stats(handle))
    batches = [b for s in stats.values() for b in s["batches"]]          # [requests, users, pairs]
    assert max(users for _, users, _ in batches) > 1, batches
    assert max(requests for requests, _, _ in batches) > 1, batches
    forwards = [f for s in stats.values() for f in s["forwards"]]
    assert max(f["heads"] for f in forwards) > 1, forwards


def test_a_call_larger_than_a_batch_is_split_and_reassembled(scorer):
    _, client = scorer
    items = [f"item {i}" for i in range(300)]                      # max_batch_size is 32 pairs
    whole = run(client.score("adapter", USERS[0], ["prompt"] * 300, items))
    head = run(client.score("adapter", USERS[0], ["prompt"] * 3, items[:3]))
    assert len(whole.scores) == 300 and whole.head == "user"
    assert whole.scores[:3] == pytest.approx(head.scores, abs=1e-5)


def test_routing_keeps_each_bucket_on_a_replica_holding_it(scorer):
    handle, client = scorer

    async def settle(deadline_s: float = 60.0) -> dict[str, dict]:
        """Warm-up rounds until a round neither moves a bucket nor reads a head."""
        end = time.monotonic() + deadline_s
        before = await replica_stats(handle)
        while True:
            for user in USERS:                   # one at a time: routing info has time to spread
                await client.score("reranker", user, ["q"], ["item"])
            after = await replica_stats(handle)
            moved = sum(after[r]["bucket_loads"] - before[r]["bucket_loads"] for r in after)
            if moved == 0 and head_reads(after) == head_reads(before):
                return after
            assert time.monotonic() < end, "bucket placement never settled"
            before = after

    settled = run(settle())
    run(rerank_all(client, USERS * 3))           # a concurrent burst after warm-up
    after = run(replica_stats(handle))
    assert {r: after[r]["bucket_loads"] for r in after} == \
        {r: settled[r]["bucket_loads"] for r in settled}
    assert head_reads(after) == head_reads(settled)       # every head was warm where it landed
    for bucket in {user_bucket(u, BUCKETS) for u in USERS}:
        served = [r for r in after if after[r]["requests_by_bucket"].get(bucket, 0) >
                  settled[r]["requests_by_bucket"].get(bucket, 0)]
        # two buckets per replica, four in use: each settles on exactly one replica
        assert len(served) == 1 and bucket in after[served[0]]["held_buckets"], (bucket, after)


def test_heads_are_evicted_at_capacity_least_recent_first(scorer):
    handle, client = scorer
    per_bucket = {b: sum(user_bucket(u, BUCKETS) == b for u in MORE) for b in
                  {user_bucket(u, BUCKETS) for u in MORE}}
    assert min(per_bucket.values()) >= CAPACITY + 4, per_bucket   # every replica overflows
    for user in MORE:
        run(client.score("adapter", user, ["prompt"], ["candidate"]))
    stats = run(replica_stats(handle))
    caches = [s["caches"]["adapter"] for s in stats.values()]
    assert all(c["size"] <= CAPACITY for c in caches)
    assert sum(c["evictions"] for c in caches) >= len(MORE) - REPLICAS * CAPACITY
    cached = [u for c in caches for u in c["users"]]
    assert set(MORE[-4:]) <= set(cached)                  # the most recent users stay
    assert not set(MORE[:4]) & set(cached)                # the oldest went first


def test_a_head_published_while_serving_is_picked_up(scorer, registry):
    _, client = scorer
    before = run(client.score("reranker", "user-1", ["q"], ["item"]))
    newcomer = run(client.score("reranker", "newcomer", ["q"], ["item"]))
    new_head, newcomer_head = random_heads(2, 384, seed=42)
    registry.save_heads("reranker", {"user-1": new_head, "newcomer": newcomer_head},
                        registry.base_version())
    deadline = time.monotonic() + 30
    while True:
        after = run(client.score("reranker", "user-1", ["q"], ["item"]))
        fitted = run(client.score("reranker", "newcomer", ["q"], ["item"]))
        if after.scores != before.scores and fitted.head == "user":
            break
        assert time.monotonic() < deadline, "the new heads were not picked up in 30 s"
    assert newcomer.head == "global"
