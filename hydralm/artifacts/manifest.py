"""The registry's JSON documents: the root manifest, the per-kind shard tables and the shards.

`manifest.json` is small (version counter, current base, bases, global heads, the shard count and
for each head kind a pointer to its shard table) so serving can poll it cheaply. A kind's heads are
split over a fixed number of shards (chosen when the registry is created: a user's shard is a
function of the hash of its id, `keys.shard_of`). Each shard maps its users' ids -> head file and
lives in an immutable, content-addressed file (`index/<kind>/shards/<ss>/<sha256>.json`); the shard
table (`index/<kind>/tables/<sha256>.json`) lists the sha256 of every shard ("" for an empty one).
A manifest update writes new shard files for the shards it changes and a new table, then swaps
the pointer: no file a reader holds ever changes under it, and the cost of an update or a lookup
depends on the shard count and the size of one shard, not on how many users there are.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hydralm.errors import ArtifactError

__all__ = [
    "HEAD_KINDS",
    "BaseEntry",
    "FileRef",
    "HeadEntry",
    "HeadKind",
    "HeadShard",
    "Manifest",
    "ShardTable",
    "TableRef",
    "check_kind",
    "parse_document",
    "utc_now",
]

HeadKind = Literal["adapter", "reranker"]
HEAD_KINDS: tuple[str, ...] = ("adapter", "reranker")
MANIFEST_FORMAT = "hydralm-registry/2"
TABLE_FORMAT = "hydralm-shard-table/1"
SHARD_FORMAT = "hydralm-head-shard/1"
DEFAULT_SHARDS = 4096
MAX_SHARDS = 65536


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def check_kind(kind: str) -> str:
    if kind not in HEAD_KINDS:
        raise ValueError(f"head kind must be one of {list(HEAD_KINDS)}, got {kind!r}")
    return kind


class _Document(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FileRef(_Document):
    key: str = Field(description="Storage key of the file.")
    sha256: str = Field(description="sha256 of the whole file.")


class HeadEntry(FileRef):
    base_version: str = Field(description="The base the head was fitted on.")
    updated_at: str = Field(description="When this head was saved (UTC, ISO 8601).")
    history_version: int | None = Field(
        default=None, ge=0, description="The user's history version the head was fitted on "
        "(HistoryStore.version); None when the writer did not say.")


class BaseEntry(_Document):
    version: str
    model: FileRef
    config: FileRef
    created_at: str


class TableRef(FileRef):
    count: int = Field(ge=0, description="Heads of this kind, over all shards.")


class ShardTable(_Document):
    format: Literal["hydralm-shard-table/1"] = TABLE_FORMAT
    kind: HeadKind
    shards: tuple[str, ...] = Field(description="sha256 of each shard's file; '' when empty.")


class HeadShard(_Document):
    format: Literal["hydralm-head-shard/1"] = SHARD_FORMAT
    kind: HeadKind
    shard: int = Field(ge=0, description="This shard's number (keys.shard_of of its users).")
    heads: dict[str, HeadEntry] = Field(default_factory=dict, description="user id -> head file")


class Manifest(_Document):
    format: Literal["hydralm-registry/2"] = MANIFEST_FORMAT
    version: int = Field(default=0, ge=0, description="+1 on every update; 0: nothing written.")
    base_version: str | None = Field(default=None, description="The current base; heads must match.")
    created_at: str = Field(default_factory=utc_now)
    updated_at: str = Field(default_factory=utc_now)
    shards: int = Field(default=DEFAULT_SHARDS, ge=1, le=MAX_SHARDS,
                        description="Shards per head kind; fixed when the registry is created.")
    bases: dict[str, BaseEntry] = Field(default_factory=dict)
    global_heads: dict[HeadKind, HeadEntry] = Field(default_factory=dict)
    head_tables: dict[HeadKind, TableRef] = Field(default_factory=dict)


def parse_document(model: type[_Document], data: bytes, where: str) -> _Document:
    """Validate JSON bytes as `model`; ArtifactError naming `where` when corrupt."""
    try:
        return model.model_validate_json(data)
    except ValidationError as exc:
        raise ArtifactError(f"{where} is not a valid {model.__name__}: {exc}") from exc
