"""Path-like user ids never escape the storage prefix: not in the registry (local directory or an
S3 bucket prefix), not in the history store, not in the generator's response cache. Ids are data:
hashed into fixed-shape names or stored inside files, never joined into a path."""

from __future__ import annotations

import hashlib
import io
import os

import pytest
import torch
from botocore.exceptions import ClientError

from hydralm.artifacts import Registry, S3Storage
from hydralm.generator import ResponseCache
from hydralm.history import SqliteHistoryStore
from hydralm.model import HeadState

NASTY = ["../../etc/passwd", "/etc/passwd", "..", ".", "a/../../b", "a\\..\\b", "~root",
         "%2e%2e%2f", "C:\\Windows", "\u202e../x", "x" * 1000, "nul\x00byte", "new\nline",
         "..\u2215..\u2215x", "user/../../../../registry/manifest.json"]


def head(value: float, d: int = 4) -> HeadState:
    return HeadState(torch.full((d, d), value), torch.full((d,), value),
                     torch.full((d, 2), value), torch.full((2,), value))


def _files_outside(root, where) -> list[str]:
    """Files anywhere in `where` whose real path is not under `root`."""
    return [os.path.join(d, f) for d, _, files in os.walk(where) for f in files
            if not os.path.realpath(os.path.join(d, f)).startswith(str(root) + os.sep)]


def test_registry_on_disk_keeps_every_id_under_its_root(tmp_path):
    root = tmp_path / "deep" / "registry"
    registry = Registry(str(root))
    base = registry.publish_base({"w": torch.arange(4.0)}, {"name": "tiny"})
    registry.save_heads("reranker", {u: head(i) for i, u in enumerate(NASTY)}, base)
    for i, user in enumerate(NASTY):
        assert float(registry.load_head("reranker", user).w1[0, 0]) == i
    assert _files_outside(root, tmp_path) == []
    names = [p.name for p in root.rglob("*")]
    assert not [n for n in names if ".." in n or "passwd" in n or "\x00" in n]
    assert registry.verify() == []


class RecordingS3:
    """An in-memory S3 client with conditional puts; records every key it is asked for."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.keys: list[str] = []

    @staticmethod
    def _error(code: str, op: str) -> ClientError:
        return ClientError({"Error": {"Code": code, "Message": code}}, op)

    def _etag(self, key: str) -> str:
        return hashlib.md5(self.objects[key]).hexdigest()

    def put_object(self, Bucket, Key, Body, IfNoneMatch=None, IfMatch=None, **_):
        self.keys.append(Key)
        if IfNoneMatch == "*" and Key in self.objects or (
                IfMatch is not None and (Key not in self.objects or self._etag(Key) != IfMatch)):
            raise self._error("PreconditionFailed", "PutObject")
        self.objects[Key] = bytes(Body)

    def get_object(self, Bucket, Key):
        self.keys.append(Key)
        if Key not in self.objects:
            raise self._error("NoSuchKey", "GetObject")
        return {"Body": io.BytesIO(self.objects[Key]), "ETag": self._etag(Key)}

    def head_object(self, Bucket, Key):
        self.keys.append(Key)
        if Key not in self.objects:
            raise self._error("404", "HeadObject")
        return {}


def test_registry_on_s3_keeps_every_key_under_its_prefix():
    client = RecordingS3()
    registry = Registry(S3Storage("bucket", "tenant-a/registry", client=client))
    base = registry.publish_base({"w": torch.arange(4.0)}, {"name": "tiny"})
    registry.save_heads("adapter", {u: head(i) for i, u in enumerate(NASTY)}, base)
    assert float(registry.load_head("adapter", NASTY[0]).w1[0, 0]) == 0
    assert client.keys and all(k.startswith("tenant-a/registry/") for k in client.keys)
    assert not [k for k in client.keys if ".." in k or "//" in k or "passwd" in k]


def test_history_store_keeps_ids_as_data(tmp_path):
    store = SqliteHistoryStore(tmp_path / "store" / "history.db")
    # control characters and ids over 256 characters are refused; the rest are plain data
    kept = [u for u in NASTY if "\x00" not in u and "\n" not in u and len(u) <= 256]
    for user in kept:
        store.append(user, [{"id": "1", "text": user}])
    assert {u: store.get(u) for u in kept} == {u: [{"id": "1", "text": u}] for u in kept}
    for user in set(NASTY) - set(kept):
        with pytest.raises(ValueError, match="control characters|longer than"):
            store.append(user, [{"id": "1"}])
    assert sorted(p.name for p in (tmp_path / "store").iterdir()) <= [
        "history.db", "history.db-shm", "history.db-wal"]
    assert _files_outside(tmp_path / "store", tmp_path) == []


def test_response_cache_names_files_by_hash_only(tmp_path):
    cache = ResponseCache(tmp_path / "cache")
    for user in NASTY:
        payload = {"model": "m", "prompt": user, "user": user}
        cache.put(payload, [user])
        assert cache.get(payload) == [user]
    files = [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    assert len(files) == len(NASTY)
    assert all(len(p.stem) == 64 and set(p.stem) <= set("0123456789abcdef") for p in files)
    assert _files_outside(tmp_path / "cache", tmp_path) == []
