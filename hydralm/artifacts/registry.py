"""The versioned registry of bases and per-user heads.

Layout under the storage root:

    manifest.json                                  root manifest, replaced by compare-and-swap
    bases/<version>/model.safetensors, config.json base checkpoints (version = content hash)
    heads/<kind>/<tt>/<token>/<sha16>.safetensors  one user's head (token = sha256 of the user id)
    global/<kind>/<sha16>.safetensors              a kind's global head
    index/<kind>/tables/<sha256>.json              the kind's shard table: every shard's sha256
    index/<kind>/shards/<ss>/<sha256>.json         one shard: its users' ids -> head file
    gc/                                            garbage collection's state (see gc.py)

Guarantees:
- Every data file is immutable and content-addressed, and is written before the manifest update
  that makes it visible. The manifest is written last, atomically, so a reader never sees a
  manifest (or a table or shard) pointing at a missing or half-written file; a crash leaves only
  orphans. A file is written even when it already exists (same bytes), so its modification time
  tells garbage collection that a writer is about to name it.
- Writers never lose each other's updates: every manifest update is a read-modify-write committed
  by `Storage.put_if` (flock on local disk, conditional PUT on S3) and retried on conflict; the
  change (e.g. "add these heads") is re-applied to the newest manifest on each attempt.
- `load_head` checks the file's sha256 against the index, the file's own tensor digest and
  identity, and that it belongs to the manifest's current base; any mismatch is an ArtifactError.
- Publishing K users' heads writes their head files, the shards they fall in and the table; a
  lookup reads the manifest, the table (cached by sha256) and one shard: neither grows with the
  number of users (see index.py).
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from torch import Tensor

from hydralm.artifacts.index import ShardedIndex
from hydralm.artifacts.keys import user_token
from hydralm.artifacts.manifest import (
    DEFAULT_SHARDS,
    MANIFEST_FORMAT,
    MAX_SHARDS,
    BaseEntry,
    FileRef,
    HeadEntry,
    Manifest,
    check_kind,
    parse_document,
    utc_now,
)
from hydralm.artifacts.serialize import (
    decode_head,
    decode_tensors,
    encode_head,
    encode_tensors,
    sha256,
)
from hydralm.artifacts.storage import Storage, WriteConflictError
from hydralm.errors import ArtifactError, NotFoundError, StaleHeadError
from hydralm.model.heads import HeadState

__all__ = ["GLOBAL_USER", "MANIFEST_KEY", "Registry"]

log = logging.getLogger(__name__)

MANIFEST_KEY = "manifest.json"
GLOBAL_USER = "<global>"   # the user id recorded inside global head files


class Registry:
    """Bases, heads and the manifest over one `Storage` (or a URI: a path or s3://bucket/prefix).

    `shards` is the number of index shards per head kind of a registry this instance creates
    (its first write); an existing registry keeps the count its manifest records."""

    def __init__(self, storage: Storage | str, *, max_attempts: int = 64,
                 write_threads: int = 8, shards: int = DEFAULT_SHARDS) -> None:
        if not 1 <= shards <= MAX_SHARDS:
            raise ValueError(f"shards must be in [1, {MAX_SHARDS}], got {shards!r}")
        self.storage = storage if isinstance(storage, Storage) else Storage.from_uri(storage)
        self.max_attempts = max_attempts
        self.write_threads = write_threads
        self.shards = shards
        self.index = ShardedIndex(self._read_verified, self._put_immutable,
                                  write_threads=write_threads)

    def __repr__(self) -> str:
        return f"Registry({self.storage.uri!r})"

    # -- manifest ---------------------------------------------------------------------------------

    def _read_manifest(self) -> tuple[Manifest, str | None]:
        try:
            data, token = self.storage.get_versioned(MANIFEST_KEY)
        except NotFoundError:
            return Manifest(shards=self.shards), None
        return self._parse_manifest(data), token

    def _parse_manifest(self, data: bytes) -> Manifest:
        where = f"{self.storage.uri}/{MANIFEST_KEY}"
        try:
            found = json.loads(data).get("format")
        except (ValueError, AttributeError):
            found = None        # not JSON: parse_document names the problem
        if found == "hydralm-registry/1":
            raise ArtifactError(f"{where} is a hydralm-registry/1 registry (one index file per "
                                f"kind); this version reads {MANIFEST_FORMAT}: convert it once "
                                f"with `hydralm registry migrate {self.storage.uri}`")
        return parse_document(Manifest, data, where)

    def manifest(self) -> Manifest:
        """The current manifest (an empty one, version 0, before anything was written)."""
        return self._read_manifest()[0]

    def manifest_version(self) -> int:
        """The manifest's update counter: one small read, for serving to poll."""
        return self.manifest().version

    def base_version(self) -> str | None:
        return self.manifest().base_version

    def _update(self, change: Callable[[Manifest], Manifest]) -> Manifest:
        """Apply `change` to the newest manifest and commit it by compare-and-swap, retrying."""
        for attempt in range(self.max_attempts):
            current, token = self._read_manifest()
            new = change(current).model_copy(update={"version": current.version + 1,
                                                     "updated_at": utc_now()})
            try:
                self.storage.put_if(MANIFEST_KEY, new.model_dump_json(indent=1).encode(), token)
            except WriteConflictError:
                log.debug("manifest update conflict (attempt %d), retrying", attempt + 1)
                time.sleep(random.uniform(0, min(0.2, 0.002 * 2 ** attempt)))
                continue
            log.info("registry %s: manifest version %d", self.storage.uri, new.version)
            return new
        raise ArtifactError(f"manifest of {self.storage.uri} kept changing: gave up after "
                            f"{self.max_attempts} attempts")

    # -- files ------------------------------------------------------------------------------------

    def _put_immutable(self, key: str, data: bytes) -> FileRef:
        """Write a content-addressed file. Written even when it is already there (same bytes):
        the fresh modification time keeps garbage collection off a file about to be named."""
        self.storage.put(key, data)
        return FileRef(key=key, sha256=sha256(data))

    def _read_verified(self, ref: FileRef, what: str) -> bytes:
        try:
            data = self.storage.get(ref.key)
        except NotFoundError as exc:
            raise ArtifactError(f"{what}: file {ref.key!r} named by the manifest is missing "
                                f"from {self.storage.uri}") from exc
        found = sha256(data)
        if found != ref.sha256:
            raise ArtifactError(f"{what}: checksum mismatch for {ref.key!r}: manifest says "
                                f"sha256 {ref.sha256}, file has {found}")
        return data

    # -- bases ------------------------------------------------------------------------------------

    def publish_base(self, model_state: Mapping[str, Tensor], config: Mapping[str, Any]) -> str:
        """Store a base checkpoint and make it current; returns its version (a content hash).

        Heads saved for an earlier base stop loading (ArtifactError) until they are refitted.
        """
        try:
            config_bytes = json.dumps(dict(config), sort_keys=True, indent=1).encode()
        except TypeError as exc:
            raise ValueError(f"base config must be JSON-serializable: {exc}") from exc
        model_bytes = encode_tensors(model_state, {"format": "hydralm-base/1"})
        version = sha256(f"{sha256(model_bytes)}:{sha256(config_bytes)}".encode())[:16]
        model_ref = self._put_immutable(f"bases/{version}/model.safetensors", model_bytes)
        config_ref = self._put_immutable(f"bases/{version}/config.json", config_bytes)

        def change(m: Manifest) -> Manifest:
            entry = m.bases.get(version) or BaseEntry(version=version, model=model_ref,
                                                      config=config_ref, created_at=utc_now())
            return m.model_copy(update={"base_version": version,
                                        "bases": {**m.bases, version: entry}})

        self._update(change)
        return version

    def load_base(self, version: str | None = None) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """(state dict, config) of `version`, default the current base; checksums verified."""
        manifest = self.manifest()
        version = version or manifest.base_version
        if version is None:
            raise NotFoundError(f"no base has been published in {self.storage.uri}")
        entry = manifest.bases.get(version)
        if entry is None:
            raise NotFoundError(f"no base {version!r} in {self.storage.uri}; known: "
                                f"{sorted(manifest.bases)}")
        what = f"base {version}"
        tensors, _ = decode_tensors(self._read_verified(entry.model, what), what)
        config = json.loads(self._read_verified(entry.config, what))
        return tensors, config

    # -- heads ------------------------------------------------------------------------------------

    def head_entry(self, kind: str, user_id: str,
                   manifest: Manifest | None = None) -> HeadEntry | None:
        """The index entry of `user_id`'s `kind` head (file, base, history version), or None.
        Reads the kind's table (cached by sha256) and the user's one shard."""
        check_kind(kind)
        return self.index.entry(kind, manifest or self.manifest(), user_id)

    def iter_head_entries(self, kind: str,
                          manifest: Manifest | None = None) -> Iterator[tuple[str, HeadEntry]]:
        """Every (user id, entry) of `kind`, streamed shard by shard (for jobs, not requests)."""
        check_kind(kind)
        return self.index.entries(kind, manifest or self.manifest())

    def head_index(self, kind: str, manifest: Manifest | None = None) -> dict[str, HeadEntry]:
        """user id -> head entry for every head of `kind`: reads every shard, so it costs
        O(users); jobs and tools only (serving uses `head_entry`)."""
        return dict(self.iter_head_entries(kind, manifest))

    def head_count(self, kind: str, manifest: Manifest | None = None) -> int:
        check_kind(kind)
        ref = (manifest or self.manifest()).head_tables.get(kind)
        return ref.count if ref else 0

    def _check_base(self, manifest: Manifest, base_version: str, what: str) -> None:
        if manifest.base_version != base_version:
            raise ArtifactError(f"cannot save {what} fitted on base {base_version!r}: the "
                                f"registry's current base is {manifest.base_version!r}; "
                                "refit on the current base")

    def _write_head(self, key_dir: str, kind: str, user_id: str, state: HeadState,
                    base_version: str, history_version: int | None = None) -> HeadEntry:
        data = encode_head(state, kind=kind, user_id=user_id, base_version=base_version)
        ref = self._put_immutable(f"{key_dir}/{sha256(data)[:16]}.safetensors", data)
        return HeadEntry(key=ref.key, sha256=ref.sha256, base_version=base_version,
                         updated_at=utc_now(), history_version=history_version)

    def save_heads(self, kind: str, heads: Mapping[str, HeadState], base_version: str, *,
                   history_versions: Mapping[str, int] | None = None) -> int:
        """Write many users' heads, then publish them in ONE manifest update; returns its version.

        `history_versions` (user id -> HistoryStore.version the head was fitted on) is recorded
        in each user's entry; users it does not name get None."""
        check_kind(kind)
        history_versions = dict(history_versions or {})
        unknown = sorted(set(history_versions) - set(heads))
        if unknown:
            raise ValueError(f"history_versions names users without a head to save: "
                             f"{unknown[:5]!r}")
        manifest = self.manifest()
        self._check_base(manifest, base_version, f"{kind} heads")   # fail before writing files
        if not heads:
            return manifest.version

        def write(item: tuple[str, HeadState]) -> tuple[str, HeadEntry]:
            user_id, state = item
            token = user_token(user_id)
            return user_id, self._write_head(f"heads/{kind}/{token[:2]}/{token}", kind, user_id,
                                             state, base_version, history_versions.get(user_id))

        with ThreadPoolExecutor(max_workers=self.write_threads) as pool:
            entries = dict(pool.map(write, heads.items()))

        def change(m: Manifest) -> Manifest:
            self._check_base(m, base_version, f"{kind} heads")
            table = self.index.publish(kind, m, entries)
            return m.model_copy(update={"head_tables": {**m.head_tables, kind: table}})

        return self._update(change).version

    def save_head(self, kind: str, user_id: str, state: HeadState, base_version: str) -> int:
        return self.save_heads(kind, {user_id: state}, base_version)

    def save_global_head(self, kind: str, state: HeadState, base_version: str) -> int:
        """The head trained on every user's data: the fallback for users without their own."""
        check_kind(kind)
        self._check_base(self.manifest(), base_version, f"global {kind} head")
        entry = self._write_head(f"global/{kind}", kind, GLOBAL_USER, state, base_version)

        def change(m: Manifest) -> Manifest:
            self._check_base(m, base_version, f"global {kind} head")
            return m.model_copy(update={"global_heads": {**m.global_heads, kind: entry}})

        return self._update(change).version

    def _load(self, entry: HeadEntry, manifest: Manifest, kind: str, user_id: str,
              what: str) -> HeadState:
        head = decode_head(self._read_verified(entry, what), f"{what} ({entry.key})")
        if (head.kind, head.user_id) != (kind, user_id):
            raise ArtifactError(f"{what}: file {entry.key!r} holds the {head.kind} head of user "
                                f"{head.user_id!r}")
        if head.base_version != manifest.base_version:
            raise StaleHeadError(f"{what} was fitted on base {head.base_version!r} but the "
                                f"registry's current base is {manifest.base_version!r}; "
                                "refit it on the current base")
        return head.state

    def load_head(self, kind: str, user_id: str) -> HeadState:
        """A user's head, verified; NotFoundError when the user has none."""
        manifest = self.manifest()
        entry = self.head_entry(kind, user_id, manifest)
        if entry is None:
            raise NotFoundError(f"no {kind} head for user {user_id!r} in {self.storage.uri}")
        return self._load(entry, manifest, kind, user_id, f"{kind} head of user {user_id!r}")

    def load_global_head(self, kind: str) -> HeadState:
        check_kind(kind)
        manifest = self.manifest()
        entry = manifest.global_heads.get(kind)
        if entry is None:
            raise NotFoundError(f"no global {kind} head in {self.storage.uri}")
        return self._load(entry, manifest, kind, GLOBAL_USER, f"global {kind} head")

    def has_head(self, kind: str, user_id: str) -> bool:
        return self.head_entry(kind, user_id) is not None

    def list_users(self, kind: str) -> list[str]:
        """Every user with a `kind` head, sorted (O(users): reads every shard)."""
        return sorted(user for user, _ in self.iter_head_entries(kind))

    def verify(self) -> list[str]:
        """Every problem found re-reading all files the manifest names (empty: consistent)."""
        manifest, problems = self.manifest(), []
        refs: list[tuple[str, FileRef]] = []
        for version, base in manifest.bases.items():
            refs += [(f"base {version} model", base.model), (f"base {version} config", base.config)]
        refs += [(f"global {kind} head", entry) for kind, entry in manifest.global_heads.items()]
        for kind in manifest.head_tables:
            try:
                index = self.head_index(kind, manifest)
            except ArtifactError as exc:
                problems.append(str(exc))
                continue
            refs += [(f"{kind} head of user {user!r}", entry) for user, entry in index.items()]
        for what, ref in refs:
            try:
                self._read_verified(ref, what)
            except ArtifactError as exc:
                problems.append(str(exc))
        return problems
