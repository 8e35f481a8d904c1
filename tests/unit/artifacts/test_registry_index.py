"""The sharded head index: what a publish writes and a lookup reads does not grow with the number
of users; the shard count is fixed at creation; a registry of the old layout is refused."""

from __future__ import annotations

import pytest
import torch

from hydralm.artifacts import MANIFEST_KEY, LocalStorage, Registry, shard_of
from hydralm.errors import ArtifactError
from hydralm.model import HeadState

SHARDS = 16


def head(value: float, d: int = 4) -> HeadState:
    return HeadState(torch.full((d, d), value), torch.full((d,), value),
                     torch.full((d, 2), value), torch.full((2,), value))


class RecordingStorage(LocalStorage):
    """Local storage that records every key written and read (with sizes)."""

    def __init__(self, root) -> None:
        super().__init__(root)
        self.puts: list[str] = []
        self.gets: list[tuple[str, int]] = []

    def put(self, key, data):
        self.puts.append(key)
        super().put(key, data)

    def get(self, key):
        data = super().get(key)
        self.gets.append((key, len(data)))
        return data

    def reset(self) -> None:
        self.puts, self.gets = [], []


def kinds_of(keys):
    """'head', 'shard', 'table' or the key itself, per key."""
    names = {"heads": "head", "shards": "shard", "tables": "table"}
    return sorted(names.get(k.split("/")[0] if k.startswith("heads/") else k.split("/")[2], k)
                  if "/" in k else k for k in keys)


@pytest.fixture()
def storage(tmp_path) -> RecordingStorage:
    return RecordingStorage(tmp_path / "reg")


@pytest.fixture()
def registry(storage) -> Registry:
    registry = Registry(storage, shards=SHARDS)
    version = registry.publish_base({"w": torch.ones(2)}, {"name": "tiny"})
    registry.save_heads("reranker", {f"user{i}": head(float(i)) for i in range(200)}, version)
    storage.reset()
    return registry


def test_publishing_one_head_writes_its_file_one_shard_one_table_and_the_manifest(registry,
                                                                                    storage):
    registry.save_head("reranker", "newcomer", head(7.0), registry.base_version())
    assert kinds_of(storage.puts) == ["head", MANIFEST_KEY, "shard", "table"]
    assert registry.head_count("reranker") == 201
    registry.save_head("reranker", "newcomer", head(8.0), registry.base_version())
    assert registry.head_count("reranker") == 201          # replaced, not added
    shard = [k for k in storage.puts if "/shards/" in k][-1]
    body = storage.get(shard).decode()
    mates = [f"user{i}" for i in range(200) if shard_of(f"user{i}", SHARDS) ==
             shard_of("newcomer", SHARDS)]
    assert all(f'"{u}"' in body for u in mates)
    assert body.count('"key"') == len(mates) + 1            # one shard's users, not all 201


def test_a_cold_lookup_reads_the_manifest_the_table_one_shard_and_the_head(registry, storage):
    fresh = Registry(storage)
    assert fresh.load_head("reranker", "user5").w1[0, 0] == 5.0
    assert kinds_of(k for k, _ in storage.gets) == ["head", MANIFEST_KEY, "shard", "table"]
    storage.reset()
    other = next(f"user{i}" for i in range(200)
                 if shard_of(f"user{i}", SHARDS) != shard_of("user5", SHARDS))
    fresh.load_head("reranker", other)                       # the table is cached by sha256
    assert kinds_of(k for k, _ in storage.gets) == ["head", MANIFEST_KEY, "shard"]


def test_entries_stream_every_user_and_list_users_sorts_them(registry):
    users = [u for u, _ in registry.iter_head_entries("reranker")]
    assert sorted(users) == registry.list_users("reranker") == sorted(f"user{i}"
                                                                      for i in range(200))
    assert registry.verify() == []


def test_the_shard_count_is_fixed_when_the_registry_is_created(registry, storage):
    other = Registry(storage.uri)                            # default shard count: ignored
    other.save_head("reranker", "late", head(1.0), other.base_version())
    assert other.manifest().shards == SHARDS
    assert len(other.index.table("reranker", other.manifest())) == SHARDS
    assert other.load_head("reranker", "user3").w1[0, 0] == 3.0
    with pytest.raises(ValueError, match="shards must be in"):
        Registry(storage.uri, shards=0)


def test_a_registry_of_the_single_index_layout_is_refused_with_the_way_out(tmp_path):
    storage = LocalStorage(tmp_path / "old")
    storage.put(MANIFEST_KEY, b'{"format": "hydralm-registry/1", "version": 3}')
    with pytest.raises(ArtifactError, match="hydralm registry migrate"):
        Registry(storage).manifest()


def test_a_malformed_entry_in_a_verified_shard_names_the_user_and_the_shard(registry, storage):
    import json

    from hydralm.artifacts import TableRef
    from hydralm.artifacts.index import shard_key, table_key
    from hydralm.artifacts.serialize import sha256

    number = shard_of("broken", SHARDS)
    doc = json.dumps({"format": "hydralm-head-shard/1", "kind": "reranker", "shard": number,
                      "heads": {"broken": {"key": "heads/x"}}}).encode()
    storage.put(shard_key("reranker", sha256(doc)), doc)
    shas = [""] * SHARDS
    shas[number] = sha256(doc)
    table = json.dumps({"format": "hydralm-shard-table/1", "kind": "reranker",
                        "shards": shas}).encode()
    storage.put(table_key("reranker", sha256(table)), table)
    ref = TableRef(key=table_key("reranker", sha256(table)), sha256=sha256(table), count=1)
    registry._update(lambda m: m.model_copy(update={"head_tables": {"reranker": ref}}))
    with pytest.raises(ArtifactError, match=r"entry of user 'broken' is not a valid HeadEntry"):
        registry.load_head("reranker", "broken")
    mate = next(f"mate{i}" for i in range(1000) if shard_of(f"mate{i}", SHARDS) == number)
    with pytest.raises(ArtifactError, match=f"shard {number} .* holds an invalid entry"):
        registry.save_head("reranker", mate, head(1.0), registry.base_version())
