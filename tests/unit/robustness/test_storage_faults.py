"""Artifact storage unavailable while heads load, against the real app in this process: the
registry's storage is wrapped so reads fail the way S3Storage fails when its endpoint is
unreachable (an ArtifactError raised from botocore's EndpointConnectionError); and S3Storage
itself against an endpoint that accepts connections but never answers."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from botocore.exceptions import EndpointConnectionError
from hydra_parts import running_api

from hydralm.artifacts import S3Storage, Storage
from hydralm.errors import ArtifactError
from hydralm.scoring import RetryPolicy

QUERY = {"query": "robots", "items": [{"id": "x1", "description": "robots", "tag": "sci-fi"}]}


class FlakyStorage(Storage):
    """Delegates to a real storage; `fail_next` reads fail first, and every read while `down`."""

    def __init__(self, inner: Storage) -> None:
        self.inner, self.down, self.fail_next, self.failed = inner, False, 0, 0
        self._lock = threading.Lock()

    @property
    def uri(self) -> str:
        return self.inner.uri

    def _check(self, key: str) -> None:
        with self._lock:
            failing = self.down or self.fail_next > 0
            self.fail_next = max(0, self.fail_next - 1)
            self.failed += failing
        if failing:
            cause = EndpointConnectionError(endpoint_url="http://127.0.0.1:9/registry")
            raise ArtifactError(f"S3 get of {key!r} failed: {cause}") from cause

    def get(self, key: str) -> bytes:
        self._check(key)
        return self.inner.get(key)

    def get_versioned(self, key: str) -> tuple[bytes, str]:
        self._check(key)
        return self.inner.get_versioned(key)

    def exists(self, key: str) -> bool:
        self._check(key)
        return self.inner.exists(key)

    def put(self, key: str, data: bytes) -> None:
        self.inner.put(key, data)

    def put_if(self, key: str, data: bytes, token: str | None) -> None:
        self.inner.put_if(key, data, token)

    def list(self, prefix: str = "") -> list[str]:
        return self.inner.list(prefix)

    def delete(self, key: str) -> None:
        self.inner.delete(key)


@pytest.fixture
def parts(tmp_path):
    with running_api(tmp_path) as p:
        # The bases load before the fault (as a Scorer replica loads them in __init__).
        assert _rerank(p, "alice").status_code == 200
        p.registry.storage = FlakyStorage(p.registry.storage)
        yield p


def _rerank(parts, user: str):
    return parts.client.post("/v1/rerank", json={"user": user, **QUERY})


def test_transient_read_failures_are_retried_and_the_users_head_served(parts):
    parts.registry.storage.fail_next = 2
    r = _rerank(parts, "a:ann")
    assert r.status_code == 200 and r.json()["head"] == "user", r.text
    assert parts.registry.storage.failed == 2
    assert parts.scorer.cache_stats()["reranker"].retries >= 1


def test_an_outage_is_bounded_and_what_is_cached_keeps_serving(parts):
    assert _rerank(parts, "alice").json()["head"] == "user"       # cached before the outage
    assert _rerank(parts, "zed").json()["head"] == "global"       # global head cached too
    parts.registry.storage.down = True
    start = time.monotonic()
    r = _rerank(parts, "b:bea")                                   # trained, not cached
    assert time.monotonic() - start < 15
    assert r.status_code in (200, 500, 503), r.text
    if r.status_code != 200:
        assert r.json()["error"]["code"] == "artifact_error"
    assert _rerank(parts, "alice").json()["head"] == "user"         # from the cache
    assert _rerank(parts, "zed").json()["head"] == "global"
    parts.registry.storage.down = False                           # the storage comes back
    r = _rerank(parts, "b:bea")
    assert r.status_code == 200 and r.json()["head"] == "user", r.text


def test_an_outage_falls_back_to_the_global_head_and_says_so(parts):
    assert _rerank(parts, "zed").json()["head"] == "global"        # the global head is cached
    parts.registry.storage.down = True
    for user in ("b:bea", "z:unseen"):                              # trained; never seen
        r = _rerank(parts, user)
        assert r.status_code == 200 and r.json()["head"] == "global", r.text


def test_s3_reads_from_an_endpoint_that_hangs_fail_in_bounded_time(monkeypatch):
    for name, value in {"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s",
                        "AWS_DEFAULT_REGION": "us-east-1", "HYDRALM_S3_TIMEOUT_S": "0.5",
                        "HYDRALM_S3_MAX_ATTEMPTS": "2"}.items():
        monkeypatch.setenv(name, value)
    with socket.socket() as hung:              # accepts connections, never answers
        hung.bind(("127.0.0.1", 0))
        hung.listen(16)
        storage = S3Storage("bucket", "registry",
                            endpoint_url=f"http://127.0.0.1:{hung.getsockname()[1]}")
        start = time.monotonic()
        with pytest.raises(ArtifactError, match="S3 get of 'manifest.json'") as info:
            storage.get("manifest.json")
        elapsed = time.monotonic() - start
    assert elapsed < 5, f"a hung endpoint blocked a read for {elapsed:.1f}s"
    assert RetryPolicy().is_transient(info.value)      # so the head cache retries it
