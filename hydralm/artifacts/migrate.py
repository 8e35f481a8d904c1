"""Convert a registry of the single-index layout (hydralm-registry/1) to the sharded one (/2).

A /1 registry kept one index file per kind holding every user; this version reads only /2 (a
manifest that names a /1 registry is refused with a message pointing here). `migrate` reads the
old index once, writes the shards and tables of the new layout, and swaps the manifest by
compare-and-swap against the version it read, so a /1 writer racing the migration makes it start
over instead of losing a head. After the swap, a /1 writer fails on the /2 manifest (its format
check) instead of overwriting it. The old index files are left for `hydralm registry gc`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Literal

from pydantic import Field

from hydralm.artifacts.manifest import (
    MANIFEST_FORMAT,
    BaseEntry,
    FileRef,
    HeadEntry,
    HeadKind,
    Manifest,
    _Document,
    parse_document,
    utc_now,
)
from hydralm.artifacts.registry import MANIFEST_KEY, Registry
from hydralm.artifacts.storage import WriteConflictError
from hydralm.errors import ArtifactError, NotFoundError

__all__ = ["LEGACY_FORMAT", "MigrationReport", "migrate"]

log = logging.getLogger(__name__)

LEGACY_FORMAT = "hydralm-registry/1"


class LegacyIndexRef(FileRef):
    count: int = Field(ge=0)


class LegacyIndex(_Document):
    format: Literal["hydralm-head-index/1"]
    kind: HeadKind
    heads: dict[str, HeadEntry]


class LegacyManifest(_Document):
    format: Literal["hydralm-registry/1"]
    version: int = Field(ge=0)
    base_version: str | None = None
    created_at: str
    updated_at: str
    bases: dict[str, BaseEntry] = Field(default_factory=dict)
    global_heads: dict[HeadKind, HeadEntry] = Field(default_factory=dict)
    head_index: dict[HeadKind, LegacyIndexRef] = Field(default_factory=dict)


@dataclass(frozen=True)
class MigrationReport:
    uri: str
    found_format: str | None      # None: no manifest (an empty registry: nothing to convert)
    heads: dict[str, int]         # kind -> heads carried over
    manifest_version: int

    def summary(self) -> str:
        if self.found_format != LEGACY_FORMAT:
            return (f"{self.uri}: nothing to migrate (manifest format "
                    f"{self.found_format or 'absent'})")
        heads = ", ".join(f"{n} {kind}" for kind, n in sorted(self.heads.items())) or "no"
        return (f"{self.uri}: converted {LEGACY_FORMAT} -> {MANIFEST_FORMAT} ({heads} heads), "
                f"manifest version {self.manifest_version}; the old index files are garbage "
                "now: `hydralm registry gc` removes them after its grace period")


def migrate(registry: Registry) -> MigrationReport:
    """Convert `registry` in place when it has the /1 layout; a no-op report otherwise."""
    uri = registry.storage.uri
    for attempt in range(registry.max_attempts):
        try:
            data, token = registry.storage.get_versioned(MANIFEST_KEY)
        except NotFoundError:
            return MigrationReport(uri, None, {}, 0)
        try:
            found = json.loads(data).get("format")
        except (ValueError, AttributeError) as exc:
            raise ArtifactError(f"{uri}/{MANIFEST_KEY} is not a JSON object: {exc}") from exc
        if found != LEGACY_FORMAT:
            return MigrationReport(uri, found, {}, registry.manifest().version)
        legacy = parse_document(LegacyManifest, data, f"{uri}/{MANIFEST_KEY}")
        new, heads = _convert(registry, legacy)
        try:
            registry.storage.put_if(MANIFEST_KEY, new.model_dump_json(indent=1).encode(), token)
        except WriteConflictError:
            log.info("the manifest changed during the migration (attempt %d); starting over",
                     attempt + 1)
            continue
        log.info("migrated %s to %s", uri, MANIFEST_FORMAT)
        return MigrationReport(uri, LEGACY_FORMAT, heads, new.version)
    raise ArtifactError(f"manifest of {uri} kept changing during the migration: gave up after "
                        f"{registry.max_attempts} attempts")


def _convert(registry: Registry, legacy: LegacyManifest) -> tuple[Manifest, dict[str, int]]:
    """The /2 manifest holding `legacy`'s bases, global heads and every head (files written)."""
    empty = Manifest(shards=registry.shards)
    tables, heads = {}, {}
    for kind, ref in legacy.head_index.items():
        what = f"{kind} head index ({LEGACY_FORMAT})"
        index = parse_document(LegacyIndex, registry._read_verified(ref, what), ref.key)
        if index.kind != kind:
            raise ArtifactError(f"{ref.key}: a {index.kind} index named as the {kind} index")
        tables[kind] = registry.index.publish(kind, empty, index.heads)
        heads[kind] = len(index.heads)
    manifest = Manifest(version=legacy.version + 1, base_version=legacy.base_version,
                        created_at=legacy.created_at, updated_at=utc_now(),
                        shards=registry.shards, bases=legacy.bases,
                        global_heads=legacy.global_heads, head_tables=tables)
    return manifest, heads
