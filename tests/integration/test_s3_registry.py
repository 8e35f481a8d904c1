"""The registry and storage on a real S3 server (SeaweedFS on loopback): the same guarantees as on
local disk, with S3's own atomic PUT and conditional writes; garbage collection with the server's
clock, including a reader that loads heads while collections run."""

from __future__ import annotations

import threading
import time

import pytest
import torch
from fixtures_s3 import s3_server  # noqa: F401  (module-scoped SeaweedFS fixture)

from hydralm.artifacts import MANIFEST_KEY, Registry, S3Storage, Storage, WriteConflictError
from hydralm.artifacts.gc import collect
from hydralm.errors import ArtifactError, NotFoundError
from hydralm.model import HeadState

pytestmark = pytest.mark.integration

PREFIX = "team/registry"


def head(value: float, d: int = 4) -> HeadState:
    return HeadState(torch.full((d, d), value), torch.full((d,), value),
                     torch.full((d, 2), value), torch.full((2,), value))


@pytest.fixture()
def bucket(s3_server, monkeypatch) -> str:  # noqa: F811
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    return s3_server.make_bucket()


@pytest.fixture()
def registry(bucket) -> Registry:
    return Registry(f"s3://{bucket}/{PREFIX}")


@pytest.fixture()
def base(registry) -> str:
    return registry.publish_base({"w": torch.arange(4.0)}, {"name": "tiny"})


def test_storage_basics_on_s3(bucket):
    storage = Storage.from_uri(f"s3://{bucket}/{PREFIX}")
    assert isinstance(storage, S3Storage)
    storage.put("a/1", b"one")
    storage.put("a/1", b"uno")
    storage.put("a/2", b"two")
    storage.put("b", b"bee")
    assert storage.get("a/1") == b"uno" and storage.exists("b") and not storage.exists("c")
    assert storage.list() == ["a/1", "a/2", "b"] and storage.list("a/") == ["a/1", "a/2"]
    storage.delete("b")
    storage.delete("b")
    with pytest.raises(NotFoundError, match="'b'"):
        storage.get("b")


def test_conditional_writes_on_s3(bucket):
    storage = Storage.from_uri(f"s3://{bucket}/cas")
    storage.put_if("m", b"v1", None)
    with pytest.raises(WriteConflictError):
        storage.put_if("m", b"again", None)
    data, token = storage.get_versioned("m")
    storage.put_if("m", b"v2", token)
    with pytest.raises(WriteConflictError):
        storage.put_if("m", b"v3", token)
    assert storage.get("m") == b"v2"


@pytest.mark.parametrize("key", ["../x", "/abs", "a\\b", "a\x00b", "a//b"])
def test_bad_keys_never_reach_s3(bucket, s3_server, key):  # noqa: F811
    storage = Storage.from_uri(f"s3://{bucket}/{PREFIX}")
    with pytest.raises(ValueError, match="key"):
        storage.put(key, b"x")
    assert s3_server.client().list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0


def test_registry_round_trip_and_listing_on_s3(registry, base, bucket, s3_server):  # noqa: F811
    registry.save_heads("reranker", {"u1": head(1.0), "../u2": head(2.0), "a/b": head(3.0)}, base)
    registry.save_global_head("reranker", head(9.0), base)
    assert registry.list_users("reranker") == ["../u2", "a/b", "u1"]
    assert torch.equal(registry.load_head("reranker", "../u2").w1, head(2.0).w1)
    assert torch.equal(registry.load_global_head("reranker").b2, head(9.0).b2)
    state, config = registry.load_base()
    assert torch.equal(state["w"], torch.arange(4.0)) and config == {"name": "tiny"}
    assert registry.manifest_version() == 3 and registry.verify() == []
    keys = [o["Key"] for o in s3_server.client().list_objects_v2(Bucket=bucket)["Contents"]]
    assert all(k.startswith(f"{PREFIX}/") for k in keys) and f"{PREFIX}/{MANIFEST_KEY}" in keys


def test_tampering_is_detected_on_s3(registry, base, bucket, s3_server):  # noqa: F811
    registry.save_heads("adapter", {"u1": head(1.0), "u2": head(2.0)}, base)
    key = registry.head_index("adapter")["u1"].key
    client = s3_server.client()
    data = bytearray(client.get_object(Bucket=bucket, Key=f"{PREFIX}/{key}")["Body"].read())
    data[-1] ^= 0xFF
    client.put_object(Bucket=bucket, Key=f"{PREFIX}/{key}", Body=bytes(data))
    with pytest.raises(ArtifactError, match="adapter head of user 'u1': checksum mismatch"):
        registry.load_head("adapter", "u1")
    assert torch.equal(registry.load_head("adapter", "u2").w1, head(2.0).w1)
    assert len(registry.verify()) == 1


def test_base_mismatch_on_s3(registry, base):
    registry.save_head("reranker", "u1", head(1.0), base)
    newer = registry.publish_base({"w": torch.ones(4)}, {"name": "newer"})
    with pytest.raises(ArtifactError, match=f"fitted on base '{base}'.*current base is '{newer}'"):
        registry.load_head("reranker", "u1")


def test_concurrent_writers_lose_no_head_on_s3(registry, base):
    writers = 6
    barrier = threading.Barrier(writers)
    errors = []

    def write(w: int) -> None:
        mine = Registry(registry.storage.uri)
        barrier.wait(timeout=30)
        try:
            for batch in range(2):
                mine.save_heads("reranker", {f"w{w}-{batch}-{i}": head(w) for i in range(3)}, base)
        except Exception as exc:  # collected and asserted below: a thread cannot fail the test
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    assert len(registry.list_users("reranker")) == writers * 2 * 3
    assert registry.manifest_version() == 1 + writers * 2 and registry.verify() == []


# -- garbage collection on S3 (times are the server's LastModified) ------------------------------

@pytest.fixture()
def small(bucket) -> Registry:
    """A registry with few shards (fewer objects per publish), u1 replaced once."""
    registry = Registry(f"s3://{bucket}/gc", shards=8)
    version = registry.publish_base({"w": torch.ones(2)}, {"name": "tiny"})
    registry.save_heads("reranker", {"u1": head(1.0), "u2": head(2.0)}, version)
    registry.save_head("reranker", "u1", head(3.0), version)
    return registry


def test_gc_dry_run_then_apply_on_s3(small):
    before = set(small.storage.list())
    dry = collect(small, grace_s=0.0)
    assert dry.deletable and set(small.storage.list()) == before
    applied = collect(small, grace_s=0.0, apply=True)
    assert applied.deleted == len(dry.deletable)
    assert not any(small.storage.exists(k) for k in dry.deletable)
    assert small.verify() == [] and small.load_head("reranker", "u1").w1[0, 0] == 3.0


def test_gc_keeps_files_of_a_recently_superseded_manifest_on_s3(small):
    held = small.manifest()
    old = small.head_entry("reranker", "u2", held)
    small.save_head("reranker", "u2", head(5.0), small.base_version())
    first = collect(small, grace_s=3600.0, apply=True)
    assert first.deleted == 0 and first.pending > 0
    assert Registry(small.storage.uri).index.entry("reranker", held, "u2") == old
    assert small.storage.exists(old.key)
    later = collect(small, grace_s=3600.0, apply=True, now=time.time() + 3605)
    assert old.key in later.deletable and not small.storage.exists(old.key)
    assert small.verify() == []


def test_a_reader_loads_heads_while_collections_run_on_s3(small):
    version, stop, errors, loads = small.base_version(), threading.Event(), [], [0]
    reader = Registry(small.storage.uri)

    def read() -> None:
        while not stop.is_set():
            try:
                for user in ("u1", "u2"):
                    assert reader.load_head("reranker", user).w1[0, 0] >= 1.0
                    loads[0] += 1
            except Exception as exc:  # collected and asserted below
                errors.append(exc)
                return

    thread = threading.Thread(target=read)
    thread.start()
    try:
        deleted, i, deadline = 0, 0, time.monotonic() + 60
        while i < 12 or (deleted == 0 and time.monotonic() < deadline):   # until files went
            small.save_heads("reranker", {"u1": head(10.0 + i), "u2": head(50.0 + i)}, version)
            deleted += collect(small, grace_s=2.0, apply=True).deleted
            i += 1
            time.sleep(0.3)
    finally:
        stop.set()
        thread.join(timeout=60)
    assert not errors and loads[0] > 0 and deleted > 0
    assert small.verify() == [] and small.load_head("reranker", "u2").w1[0, 0] == 50.0 + i - 1
