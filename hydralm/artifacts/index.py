"""The sharded head index: a kind's user id -> head file map, split over a fixed number of shards.

A lookup reads the kind's shard table (cached by its sha256: one read per manifest change) and
the one shard of the user (cached by sha256, LRU); a publish of K users rewrites only the shards
those users fall in, then the table. Every file is immutable and content-addressed, verified
against the sha256 that names it, and written before the manifest update that makes it visible.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor

from pydantic import ValidationError

from hydralm.artifacts.keys import shard_of
from hydralm.artifacts.manifest import (
    SHARD_FORMAT,
    FileRef,
    HeadEntry,
    HeadShard,
    Manifest,
    ShardTable,
    TableRef,
    check_kind,
    parse_document,
)
from hydralm.artifacts.serialize import sha256
from hydralm.errors import ArtifactError

__all__ = ["ShardedIndex", "shard_key", "table_key"]

_CACHED_TABLES = 4     # two kinds, each the current table and the one before

ReadVerified = Callable[[FileRef, str], bytes]
PutImmutable = Callable[[str, bytes], FileRef]


def shard_key(kind: str, sha: str) -> str:
    return f"index/{kind}/shards/{sha[:2]}/{sha}.json"


def table_key(kind: str, sha: str) -> str:
    return f"index/{kind}/tables/{sha}.json"


class ShardedIndex:
    """Reads and writes the shard tables and shards of one storage (thread-safe).

    Reads and writes go through the registry's verified read and immutable write, so every
    guarantee of the registry holds for index files too."""

    def __init__(self, read_verified: ReadVerified, put_immutable: PutImmutable, *,
                 cached_shards: int = 64, write_threads: int = 8) -> None:
        self._read, self._put = read_verified, put_immutable
        self._cached_shards, self._write_threads = cached_shards, write_threads
        self._lock = threading.Lock()
        self._tables: OrderedDict[str, tuple[str, ...]] = OrderedDict()      # table sha -> shas
        # shard sha -> user id -> raw entry, validated one entry at a time when it is asked for
        self._shards: OrderedDict[str, dict[str, dict]] = OrderedDict()
        self.bytes_read = 0     # index bytes read from storage (cache misses), for benchmarks

    # -- reading ----------------------------------------------------------------------------------

    def table(self, kind: str, manifest: Manifest) -> tuple[str, ...]:
        """The sha256 of each of the kind's shards ('' when empty) under `manifest`."""
        check_kind(kind)
        ref = manifest.head_tables.get(kind)
        if ref is None:
            return ("",) * manifest.shards
        shas = self._cached(self._tables, ref.sha256)
        if shas is None:
            data = self._read(ref, f"{kind} shard table")
            table = parse_document(ShardTable, data, ref.key)
            if table.kind != kind or len(table.shards) != manifest.shards:
                raise ArtifactError(f"{ref.key}: a {table.kind} table of {len(table.shards)} "
                                    f"shards, expected {kind} with {manifest.shards}")
            shas = table.shards
            self._remember(self._tables, ref.sha256, shas, _CACHED_TABLES, len(data))
        return shas

    def shard(self, kind: str, number: int, sha: str) -> dict[str, HeadEntry]:
        """The heads of shard `number` stored under `sha` ({} for ''), every entry validated."""
        key = shard_key(kind, sha)
        return {user: _entry(raw, key, user) for user, raw in self._raw(kind, number, sha).items()}

    def _raw(self, kind: str, number: int, sha: str) -> dict[str, dict]:
        """Shard `number` as JSON objects (the file verified by sha256, its frame checked)."""
        if not sha:
            return {}
        heads = self._cached(self._shards, sha)
        if heads is None:
            key = shard_key(kind, sha)
            data = self._read(FileRef(key=key, sha256=sha), f"{kind} index shard {number}")
            heads = _parse_shard(data, key, kind, number)
            self._remember(self._shards, sha, heads, self._cached_shards, len(data))
        return heads

    def entry(self, kind: str, manifest: Manifest, user_id: str) -> HeadEntry | None:
        number = shard_of(user_id, manifest.shards)
        sha = self.table(kind, manifest)[number]
        raw = self._raw(kind, number, sha).get(user_id)
        return None if raw is None else _entry(raw, shard_key(kind, sha), user_id)

    def entries(self, kind: str, manifest: Manifest) -> Iterator[tuple[str, HeadEntry]]:
        """Every (user id, entry), shard by shard (users sorted within a shard)."""
        for number, sha in enumerate(self.table(kind, manifest)):
            yield from sorted(self.shard(kind, number, sha).items())

    # -- writing ----------------------------------------------------------------------------------

    def publish(self, kind: str, manifest: Manifest,
                entries: Mapping[str, HeadEntry]) -> TableRef:
        """Write the shards `entries` fall in (merged over `manifest`'s) and a new table."""
        shas = list(self.table(kind, manifest))
        touched: dict[int, dict[str, HeadEntry]] = {}
        for user_id, entry in entries.items():
            touched.setdefault(shard_of(user_id, manifest.shards), {})[user_id] = entry

        def write(item: tuple[int, dict[str, HeadEntry]]) -> tuple[int, str, int]:
            number, new = item
            old = self._raw(kind, number, shas[number])
            heads = dict(sorted({**old, **new}.items()))     # validated whole when written
            try:
                doc = HeadShard(kind=kind, shard=number, heads=heads)
            except ValidationError as exc:
                raise ArtifactError(f"{kind} index shard {number} ({shas[number]}) holds an "
                                    f"invalid entry: {exc}") from exc
            data = doc.model_dump_json().encode()
            sha = sha256(data)
            self._put(shard_key(kind, sha), data)
            return number, sha, len(new.keys() - old.keys())

        with ThreadPoolExecutor(max_workers=max(1, min(self._write_threads, len(touched)))) as pool:
            written = list(pool.map(write, touched.items()))
        added = 0
        for number, sha, new_users in written:
            shas[number], added = sha, added + new_users
        data = ShardTable(kind=kind, shards=tuple(shas)).model_dump_json().encode()
        ref = self._put(table_key(kind, sha256(data)), data)
        old_count = manifest.head_tables[kind].count if kind in manifest.head_tables else 0
        return TableRef(key=ref.key, sha256=ref.sha256, count=old_count + added)

    # -- caches -----------------------------------------------------------------------------------

    def _cached(self, cache: OrderedDict, sha: str):
        with self._lock:
            value = cache.get(sha)
            if value is not None:
                cache.move_to_end(sha)
            return value

    def _remember(self, cache: OrderedDict, sha: str, value, capacity: int, size: int) -> None:
        with self._lock:
            self.bytes_read += size
            cache[sha] = value
            cache.move_to_end(sha)
            while len(cache) > capacity:
                cache.popitem(last=False)


def _parse_shard(data: bytes, key: str, kind: str, number: int) -> dict[str, dict]:
    """A shard file's users -> raw entries; ArtifactError naming `key` when it is not one."""
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise ArtifactError(f"{key} is not a valid HeadShard: {exc}") from exc
    if (not isinstance(doc, dict) or doc.get("format") != SHARD_FORMAT
            or not isinstance(doc.get("heads"), dict)):
        raise ArtifactError(f"{key} is not a valid HeadShard: expected a {SHARD_FORMAT} object "
                            "with 'heads'")
    if (doc.get("kind"), doc.get("shard")) != (kind, number):
        raise ArtifactError(f"{key}: holds {doc.get('kind')} shard {doc.get('shard')}, expected "
                            f"{kind} shard {number}")
    return doc["heads"]


def _entry(raw: dict, key: str, user_id: str) -> HeadEntry:
    try:
        return HeadEntry.model_validate(raw)
    except ValidationError as exc:
        raise ArtifactError(f"{key}: the entry of user {user_id!r} is not a valid HeadEntry: "
                            f"{exc}") from exc
