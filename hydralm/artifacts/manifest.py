"""The registry's JSON documents: the root manifest and the per-kind head indexes.

`manifest.json` is small (version counter, current base, bases, global heads, and for each head
kind a pointer to its index) so serving can poll it cheaply. A head index maps user id -> head file
and lives in an immutable, content-addressed file (`index/<kind>/<sha256>.json`): each manifest
update writes a new index and swaps the pointer, so an index a reader holds never changes under it.
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
    "HeadIndex",
    "HeadKind",
    "IndexRef",
    "Manifest",
    "check_kind",
    "parse_document",
    "utc_now",
]

HeadKind = Literal["adapter", "reranker"]
HEAD_KINDS: tuple[str, ...] = ("adapter", "reranker")
MANIFEST_FORMAT = "hydralm-registry/1"
INDEX_FORMAT = "hydralm-head-index/1"


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


class IndexRef(FileRef):
    count: int = Field(ge=0, description="Heads in the index.")


class HeadIndex(_Document):
    format: Literal["hydralm-head-index/1"] = INDEX_FORMAT
    kind: HeadKind
    heads: dict[str, HeadEntry] = Field(default_factory=dict, description="user id -> head file")


class Manifest(_Document):
    format: Literal["hydralm-registry/1"] = MANIFEST_FORMAT
    version: int = Field(default=0, ge=0, description="+1 on every update; 0: nothing written.")
    base_version: str | None = Field(default=None, description="The current base; heads must match.")
    created_at: str = Field(default_factory=utc_now)
    updated_at: str = Field(default_factory=utc_now)
    bases: dict[str, BaseEntry] = Field(default_factory=dict)
    global_heads: dict[HeadKind, HeadEntry] = Field(default_factory=dict)
    head_index: dict[HeadKind, IndexRef] = Field(default_factory=dict)


def parse_document(model: type[_Document], data: bytes, where: str) -> _Document:
    """Validate JSON bytes as `model`; ArtifactError naming `where` when corrupt."""
    try:
        return model.model_validate_json(data)
    except ValidationError as exc:
        raise ArtifactError(f"{where} is not a valid {model.__name__}: {exc}") from exc
