"""LocalStorage: keys never escape the root, puts are atomic, compare-and-swap detects changes."""

from __future__ import annotations

import errno
import os

import pytest

from hydralm.artifacts import LocalStorage, S3Storage, Storage, WriteConflictError, validate_key
from hydralm.artifacts.keys import user_token
from hydralm.errors import ConfigError, NotFoundError

BAD_KEYS = [
    "../x", "a/../../x", "..", ".", "/etc/passwd", "/abs", "a//b", "a/", "", "a\\b",
    "..\\x", "a\x00b", "a/./b", ".hidden", "a/.tmp-x", "C:\\x", "a b", "ü",
]


@pytest.fixture()
def storage(tmp_path) -> LocalStorage:
    return LocalStorage(tmp_path / "root")


@pytest.mark.parametrize("key", BAD_KEYS)
def test_bad_keys_are_refused_and_nothing_lands_outside_the_root(storage, tmp_path, key):
    with pytest.raises(ValueError, match="key"):
        storage.put(key, b"x")
    for call in (storage.get, storage.exists, storage.delete):
        with pytest.raises(ValueError):
            call(key)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["root"]
    assert list((tmp_path / "root").iterdir()) == []


@pytest.mark.parametrize("key", ["a", "a/b/c.json", "heads/reranker/ab/x-1.safetensors",
                                 "A_b=c-d.e", "v1/manifest.json"])
def test_good_keys_round_trip(storage, key):
    assert validate_key(key) == key
    storage.put(key, b"payload")
    assert storage.get(key) == b"payload" and storage.exists(key)
    assert storage.list() == [key]


@pytest.mark.parametrize("user_id", ["../x", "a/b", "/etc/passwd", "a\x00b", "..", "C:\\x",
                                     "ü" * 300, "x" * 5000])
def test_user_tokens_are_always_valid_single_segments(user_id):
    token = user_token(user_id)
    assert validate_key(token) == token and len(token) == 64 and "/" not in token


def test_user_tokens_differ_per_user():
    assert user_token("a/b") != user_token("a_b") != user_token("a")


def test_put_replaces_and_get_missing_names_the_key(storage):
    storage.put("k", b"one")
    storage.put("k", b"two")
    assert storage.get("k") == b"two"
    with pytest.raises(NotFoundError, match="'missing/key'"):
        storage.get("missing/key")


def test_list_is_a_string_prefix_and_sorted(storage):
    for key in ["b/2", "b/1", "a/1", "ba", "c/d/e"]:
        storage.put(key, b"")
    assert storage.list() == ["a/1", "b/1", "b/2", "ba", "c/d/e"]
    assert storage.list("b") == ["b/1", "b/2", "ba"]
    assert storage.list("b/") == ["b/1", "b/2"]
    assert storage.list("c/d/") == ["c/d/e"]
    assert storage.list("zzz/") == []


def test_delete_is_idempotent(storage):
    storage.put("k", b"x")
    storage.delete("k")
    storage.delete("k")
    assert not storage.exists("k")


def test_a_write_failing_halfway_leaves_the_old_value_and_no_partial_file(storage, monkeypatch):
    storage.put("dir/k", b"old value")
    real_write = os.write

    def disk_full_after_half(fd, data):
        real_write(fd, bytes(data)[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(os, "write", disk_full_after_half)
        with pytest.raises(OSError, match="No space"):
            storage.put("dir/k", b"N" * 100_000)
    assert storage.get("dir/k") == b"old value"
    assert os.listdir(storage.root / "dir") == ["k"]          # the temp file is gone too


def test_leftover_temp_files_of_a_crash_are_invisible(storage):
    storage.put("dir/k", b"v")
    (storage.root / "dir" / ".tmp-k-deadbeef").write_bytes(b"half")
    assert storage.list() == ["dir/k"]


def test_put_if_creates_only_when_absent_and_swaps_only_the_version_read(storage):
    storage.put_if("m", b"v1", None)
    with pytest.raises(WriteConflictError, match="changed since it was read"):
        storage.put_if("m", b"again", None)
    data, token = storage.get_versioned("m")
    assert data == b"v1"
    storage.put_if("m", b"v2", token)
    with pytest.raises(WriteConflictError):
        storage.put_if("m", b"v3", token)                      # token of v1: stale
    assert storage.get("m") == b"v2"


def test_a_symlink_inside_the_root_cannot_lead_outside(storage, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, storage.root / "link")
    with pytest.raises(ValueError, match="outside"):
        storage.put("link/x", b"x")
    assert list(outside.iterdir()) == []


@pytest.mark.parametrize("uri, kind, where", [
    ("{tmp}/reg", LocalStorage, "{tmp}/reg"),
    ("file://{tmp}/reg", LocalStorage, "{tmp}/reg"),
    ("s3://bucket/some/prefix", S3Storage, "s3://bucket/some/prefix/"),
    ("s3://bucket", S3Storage, "s3://bucket/"),
])
def test_from_uri(tmp_path, uri, kind, where):
    storage = Storage.from_uri(uri.format(tmp=tmp_path))
    assert isinstance(storage, kind) and storage.uri == where.format(tmp=tmp_path)


@pytest.mark.parametrize("uri", ["gs://bucket/x", "http://host/x", "", "s3:///prefix",
                                 "s3://bucket/../x"])
def test_from_uri_rejects_what_it_cannot_serve(uri):
    with pytest.raises((ConfigError, ValueError), match="got"):
        Storage.from_uri(uri)


def test_s3_endpoint_comes_from_the_settings_knob(monkeypatch):
    monkeypatch.setenv("HYDRALM_S3_ENDPOINT", "http://127.0.0.1:1")
    assert S3Storage("bucket").endpoint_url == "http://127.0.0.1:1"
    assert S3Storage("bucket", endpoint_url="http://127.0.0.1:2").endpoint_url == "http://127.0.0.1:2"
