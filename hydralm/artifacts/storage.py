"""Where artifacts live: a local directory or an S3 bucket prefix, behind one small interface.

Every write is atomic (a reader sees the old bytes or the new bytes, never a part), and one
compare-and-swap write (`put_if`) lets several writers update one small file without losing each
other's changes. Keys are validated by `hydralm.artifacts.keys.validate_key`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path

from hydralm.artifacts.keys import validate_key, validate_prefix
from hydralm.atomic import write_atomic
from hydralm.errors import ArtifactError, ConfigError, NotFoundError

__all__ = ["LocalStorage", "Storage", "WriteConflictError"]

log = logging.getLogger(__name__)


class WriteConflictError(ArtifactError):
    """A compare-and-swap write lost: the object changed since it was read. Re-read and retry."""


class Storage(ABC):
    """A flat key -> bytes store with atomic puts."""

    @property
    @abstractmethod
    def uri(self) -> str:
        """Where this storage points (a path or s3://bucket/prefix), for messages."""

    @abstractmethod
    def put(self, key: str, data: bytes) -> None:
        """Write `data` under `key` atomically (replacing any old value)."""

    @abstractmethod
    def get(self, key: str) -> bytes:
        """The bytes under `key`; NotFoundError naming the key when absent."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def list(self, prefix: str = "") -> list[str]:
        """Every key starting with `prefix` (string prefix, like S3), sorted."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove `key`; deleting an absent key is not an error (as on S3)."""

    @abstractmethod
    def get_versioned(self, key: str) -> tuple[bytes, str]:
        """(bytes, token) where the opaque token identifies this version for `put_if`."""

    @abstractmethod
    def put_if(self, key: str, data: bytes, token: str | None) -> None:
        """Write only if `key` still holds the version `token` (None: only if `key` is absent).

        Raises WriteConflictError otherwise. Atomic like `put`.
        """

    @staticmethod
    def from_uri(uri: str | os.PathLike[str]) -> Storage:
        """A local path (or file:// URI) or s3://bucket/prefix."""
        text = os.fspath(uri)
        if text.startswith("s3://"):
            from hydralm.artifacts.s3 import S3Storage
            from hydralm.s3 import split_s3_uri

            return S3Storage(*split_s3_uri(text))
        if text.startswith("file://"):
            text = text[len("file://"):]
        if not text or "://" in text:
            raise ConfigError(f"storage URI must be a local path or s3://bucket/prefix, got {text!r}")
        return LocalStorage(text)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.uri!r})"


class LocalStorage(Storage):
    """A directory; keys are relative paths under it.

    put is `hydralm.atomic.write_atomic` (a hidden temp file in the target's directory, fsynced,
    os.replace()d over the key, the directory fsynced), so a crash leaves either the old file or
    the new one (plus at worst a '.tmp-*' file, which is never a valid key and never listed).
    put_if holds an flock on '<root>/.lock' across read-compare-replace; tokens are the sha256 of
    the current bytes.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    @property
    def uri(self) -> str:
        return str(self.root)

    def _path(self, key: str) -> Path:
        path = self.root / validate_key(key)
        # Defence in depth: a symlinked directory inside the root must not lead outside it.
        real_parent = Path(os.path.realpath(path.parent))
        if real_parent != self.root and self.root not in real_parent.parents:
            raise ValueError(f"storage key {key!r} resolves outside {self.root}")
        return path

    def put(self, key: str, data: bytes) -> None:
        write_atomic(self._path(key), data)

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise NotFoundError(f"no artifact {key!r} in {self.uri}") from exc

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str = "") -> list[str]:
        validate_prefix(prefix)
        start = self.root / prefix.rpartition("/")[0]   # deepest directory the prefix names
        if not start.is_dir():
            return []
        keys = []
        for dirpath, dirnames, filenames in os.walk(start):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            rel = Path(dirpath).relative_to(self.root).as_posix()
            for name in filenames:
                key = name if rel == "." else f"{rel}/{name}"
                if not name.startswith(".") and key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def get_versioned(self, key: str) -> tuple[bytes, str]:
        data = self.get(key)
        return data, hashlib.sha256(data).hexdigest()

    def put_if(self, key: str, data: bytes, token: str | None) -> None:
        with self._locked():
            try:
                current: str | None = self.get_versioned(key)[1]
            except NotFoundError:
                current = None
            if current != token:
                raise WriteConflictError(f"{key!r} in {self.uri} changed since it was read "
                                         f"(expected version {token!r}, found {current!r})")
            self.put(key, data)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.root / ".lock", "a+b") as handle:   # one open file description per call
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
