"""A replica's view of a manifest change: one shard table read per kind, and the cached users of
the shards that changed are dropped (not every user, and no list of all users is read)."""

from __future__ import annotations

import asyncio

import torch

from hydralm.artifacts import Registry, shard_of
from hydralm.model import HeadState
from hydralm.scoring import RegistryView
from hydralm.scoring.head_cache import HeadCache

SHARDS = 16
USERS = [f"user{i}" for i in range(100)]


def head(value: float, d: int = 4) -> HeadState:
    return HeadState(torch.full((d, d), value), torch.full((d,), value),
                     torch.full((d, 2), value), torch.full((2,), value))


def test_a_manifest_change_reads_one_table_and_drops_only_users_of_changed_shards(tmp_path):
    writer = Registry(str(tmp_path / "reg"), shards=SHARDS)
    version = writer.publish_base({"w": torch.ones(2)}, {"name": "tiny"})
    writer.save_heads("reranker", {u: head(float(i)) for i, u in enumerate(USERS)}, version)
    replica = Registry(str(tmp_path / "reg"))
    view = RegistryView(replica)
    before = view.snapshots(["reranker"])["reranker"]
    cache = HeadCache(lambda u: replica.load_head("reranker", u),
                      lambda: replica.load_global_head("reranker"), capacity=len(USERS))

    async def warm() -> None:
        for user in USERS:
            await cache.get(user)

    asyncio.run(warm())
    writer.save_head("reranker", "user7", head(70.0), version)
    read_before = replica.index.bytes_read
    after = view.snapshots(["reranker"])["reranker"]
    table_bytes = len(replica.storage.get(replica.manifest().head_tables["reranker"].key))
    assert replica.index.bytes_read - read_before == table_bytes        # the table, no shard
    changed = after.changed_users(before)
    mates = {u for u in USERS if shard_of(u, SHARDS) == shard_of("user7", SHARDS)}
    assert "user7" in changed and {u for u in USERS if u in changed} == mates
    assert cache.invalidate(changed) == len(mates) < len(USERS)
    assert "user7" not in cache and len(cache) == len(USERS) - len(mates)
    assert not after.changed_users(after) and not after.global_changed(before)
