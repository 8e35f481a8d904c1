"""Garbage collection: remove registry files that the current manifest no longer names.

Replaced heads, superseded shards and tables, old bases and orphans of crashed writes pile up
(every file is immutable). A file may be deleted only when no reader or writer can still need it:

1. it is not named by the current manifest (its bases, global heads, tables, shards and heads);
2. it is older than the grace period (modification time): a writer writes (or re-writes) every
   file it is about to name, so a file younger than the grace period may be named by a manifest
   update still in flight;
3. every manifest that named it was superseded at least the grace period ago, so a reader that
   fetched an older manifest keeps working for the grace period. The manifest holds no history,
   so this is established one of two ways: the current manifest was itself committed longer ago
   than the grace period (every older one was superseded before that), or an earlier collection
   recorded the file as unreferenced at least the grace period ago and the file was not written
   since (a writer naming it again re-writes it). Those records live in `gc/state.json`.

Times are the storage's own (file modification times; on S3 the LastModified of objects,
including a marker `gc/clock` written at the start of a collection), so client clocks do not
matter. Right before deleting a file its modification time is read again, so a file a writer
re-wrote during the collection is kept; what remains is the instant between that read and the
delete (S3 has no conditional delete). A dry run (the default) writes and deletes nothing.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError

from hydralm.artifacts.index import shard_key
from hydralm.artifacts.registry import MANIFEST_KEY, Registry
from hydralm.artifacts.s3 import S3Storage
from hydralm.artifacts.storage import LocalStorage, Storage
from hydralm.errors import ArtifactError, ConfigError, NotFoundError

__all__ = ["DEFAULT_GRACE_S", "GcReport", "collect", "live_keys"]

log = logging.getLogger(__name__)

DEFAULT_GRACE_S = 6 * 3600.0
COLLECTED_PREFIXES = ("bases/", "global/", "heads/", "index/")
STATE_KEY = "gc/state.json"
CLOCK_KEY = "gc/clock"
STATE_FORMAT = "hydralm-gc/1"
_SLACK_S = 2.0      # S3 times have a resolution of one second: compare with a margin


@dataclass
class GcReport:
    """What a collection found and did (sizes in bytes)."""

    uri: str
    applied: bool
    grace_s: float
    live: int = 0
    live_bytes: int = 0
    deletable: list[str] = field(default_factory=list)
    deletable_bytes: int = 0
    pending: int = 0            # unreferenced but kept: too young or possibly still read
    pending_bytes: int = 0
    deleted: int = 0
    kept_rewritten: int = 0     # deletable at listing time, written again before the delete

    def summary(self) -> str:
        mb = 1024 * 1024
        verb = "deleted" if self.applied else "would delete (dry run: add --apply)"
        return (f"{self.uri}: {self.live} live files ({self.live_bytes / mb:.1f} MB); "
                f"{verb} {self.deleted if self.applied else len(self.deletable)} files "
                f"({self.deletable_bytes / mb:.1f} MB); kept {self.pending} unreferenced files "
                f"({self.pending_bytes / mb:.1f} MB) inside the grace period of "
                f"{self.grace_s:g} s")


def live_keys(registry: Registry) -> tuple[set[str], float | None]:
    """(every key the current manifest names, the manifest's storage modification time)."""
    manifest = registry.manifest()
    keys = {MANIFEST_KEY}
    for base in manifest.bases.values():
        keys |= {base.model.key, base.config.key}
    keys |= {entry.key for entry in manifest.global_heads.values()}
    for kind, ref in manifest.head_tables.items():
        keys.add(ref.key)
        for number, sha in enumerate(registry.index.table(kind, manifest)):
            if sha:
                keys.add(shard_key(kind, sha))
                keys |= {e.key for e in registry.index.shard(kind, number, sha).values()}
    return keys, stat(registry.storage, MANIFEST_KEY)


def collect(registry: Registry, *, grace_s: float = DEFAULT_GRACE_S, apply: bool = False,
            now: float | None = None, threads: int = 8) -> GcReport:
    """Find (and with `apply`, delete) the files that may go; see the module docstring.

    `now` (seconds since the epoch, storage time) overrides the storage's clock, for tests."""
    if grace_s < 0:
        raise ValueError(f"grace_s must be >= 0, got {grace_s!r}")
    storage = registry.storage
    if now is None:
        now = _storage_now(storage) if apply else time.time()
    marks = _read_marks(storage)
    live, manifest_time = live_keys(registry)           # the manifest first, then the listing
    report = GcReport(storage.uri, apply, grace_s)
    quiet = manifest_time is None or manifest_time <= now - grace_s
    new_marks: dict[str, float] = {}
    for key, (mtime, size) in _listing(storage):
        if key in live:
            report.live, report.live_bytes = report.live + 1, report.live_bytes + size
            continue
        marked = marks.get(key)
        if marked is not None and mtime >= marked - _SLACK_S:
            marked = None                        # written again since it was marked
        old_enough = mtime <= now - grace_s
        if old_enough and (quiet or (marked is not None and marked <= now - grace_s)):
            report.deletable.append(key)
            report.deletable_bytes += size
        else:
            report.pending, report.pending_bytes = report.pending + 1, report.pending_bytes + size
            new_marks[key] = marked if marked is not None else now
    if apply:
        _delete(storage, report, now - grace_s, threads)
        _write_marks(storage, new_marks)
    log.info("%s", report.summary())
    return report


def _delete(storage: Storage, report: GcReport, cutoff: float, threads: int) -> None:
    def delete(key: str) -> bool:
        mtime = stat(storage, key)
        if mtime is not None and mtime > cutoff:
            return False                         # a writer wrote it again: it may be named now
        storage.delete(key)
        return True

    with ThreadPoolExecutor(max_workers=threads) as pool:
        done = list(pool.map(delete, report.deletable))
    report.deleted = sum(done)
    report.kept_rewritten = len(done) - report.deleted


# -- state ----------------------------------------------------------------------------------------

def _read_marks(storage: Storage) -> dict[str, float]:
    try:
        data = json.loads(storage.get(STATE_KEY))
    except NotFoundError:
        return {}
    except ValueError as exc:
        raise ArtifactError(f"{storage.uri}/{STATE_KEY} is not JSON: {exc}; delete it to start "
                            "the grace periods of unreferenced files over") from exc
    if not isinstance(data, dict) or data.get("format") != STATE_FORMAT:
        raise ArtifactError(f"{storage.uri}/{STATE_KEY} is not a {STATE_FORMAT} document")
    return {str(k): float(v) for k, v in data.get("marked", {}).items()}


def _write_marks(storage: Storage, marks: dict[str, float]) -> None:
    body = {"format": STATE_FORMAT, "marked": dict(sorted(marks.items()))}
    storage.put(STATE_KEY, json.dumps(body, separators=(",", ":")).encode())


# -- listing with modification times (the Storage interface has no such call) -------------------

def _storage_now(storage: Storage) -> float:
    """The storage's clock: the modification time of a marker written now."""
    storage.put(CLOCK_KEY, str(time.time()).encode())
    found = stat(storage, CLOCK_KEY)
    if found is None:
        raise ArtifactError(f"{storage.uri}: the clock marker {CLOCK_KEY!r} vanished after "
                            "being written")
    return found


def stat(storage: Storage, key: str) -> float | None:
    """`key`'s modification time (seconds since the epoch), None when absent."""
    if isinstance(storage, LocalStorage):
        try:
            return os.stat(storage.root / key).st_mtime
        except FileNotFoundError:
            return None
    if isinstance(storage, S3Storage):
        try:
            head = storage.client.head_object(Bucket=storage.bucket, Key=storage.prefix + key)
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) in {"404", "NoSuchKey", "NotFound"}:
                return None
            raise ArtifactError(f"S3 head of {key!r} in {storage.uri} failed: {exc}") from exc
        except BotoCoreError as exc:
            raise ArtifactError(f"S3 head of {key!r} in {storage.uri} failed: {exc}") from exc
        return head["LastModified"].timestamp()
    raise ConfigError(f"garbage collection supports local and S3 storage, got {storage!r}")


def _listing(storage: Storage) -> Iterator[tuple[str, tuple[float, int]]]:
    """(key, (modification time, size)) of every collectable file."""
    if isinstance(storage, LocalStorage):
        for prefix in COLLECTED_PREFIXES:
            start = storage.root / prefix
            for dirpath, dirnames, filenames in os.walk(start):
                dirnames[:] = [d for d in dirnames if not d.startswith(".")]
                for name in filenames:
                    if name.startswith("."):      # a writer's temp file: never a key
                        continue
                    path = Path(dirpath) / name
                    try:
                        info = path.stat()
                    except FileNotFoundError:
                        continue                  # deleted meanwhile
                    yield path.relative_to(storage.root).as_posix(), (info.st_mtime,
                                                                      info.st_size)
        return
    if isinstance(storage, S3Storage):
        pages = storage.client.get_paginator("list_objects_v2")
        try:
            for prefix in COLLECTED_PREFIXES:
                for page in pages.paginate(Bucket=storage.bucket, Prefix=storage.prefix + prefix):
                    for obj in page.get("Contents", []):
                        yield (obj["Key"][len(storage.prefix):],
                               (obj["LastModified"].timestamp(), int(obj["Size"])))
        except (ClientError, BotoCoreError) as exc:
            raise ArtifactError(f"S3 listing of {storage.uri} failed: {exc}") from exc
        return
    raise ConfigError(f"garbage collection supports local and S3 storage, got {storage!r}")
