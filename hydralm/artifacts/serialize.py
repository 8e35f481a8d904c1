"""Bytes on disk: safetensors files whose string metadata carries each artifact's config.

A head file holds w1, b1, w2, b2 and the metadata {format, kind, user_id, base_version, dim,
tensors_sha256}; the manifest holds the sha256 of the whole file. Both are checked on load.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import Tensor

from hydralm.errors import ArtifactError
from hydralm.model.heads import HeadState

__all__ = ["HeadFile", "decode_head", "decode_tensors", "encode_head", "encode_tensors", "sha256"]

HEAD_FORMAT = "hydralm-head/1"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _tensors_digest(tensors: Mapping[str, Tensor]) -> str:
    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name]
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        digest.update(t.contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def encode_tensors(tensors: Mapping[str, Tensor], metadata: Mapping[str, str] | None = None) -> bytes:
    """safetensors bytes of CPU copies of `tensors` (copies: shared storage is not allowed)."""
    plain = {name: t.detach().to("cpu").contiguous().clone() for name, t in tensors.items()}
    return st_save(plain, metadata=dict(metadata or {}))


def _metadata(data: bytes, where: str) -> dict[str, str]:
    """The __metadata__ block of a safetensors file (the first 8 bytes give the header length)."""
    try:
        (size,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8:8 + size])
        return dict(header.get("__metadata__") or {})
    except (struct.error, ValueError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{where}: not a safetensors file: {exc}") from exc


def decode_tensors(data: bytes, where: str) -> tuple[dict[str, Tensor], dict[str, str]]:
    """(tensors, metadata) from safetensors bytes; ArtifactError naming `where` when torn."""
    metadata = _metadata(data, where)
    try:
        return st_load(data), metadata
    except SafetensorError as exc:
        raise ArtifactError(f"{where}: unreadable safetensors data: {exc}") from exc


@dataclass(frozen=True)
class HeadFile:
    """A decoded head file: the head and the facts it carries about itself."""

    state: HeadState
    kind: str
    user_id: str
    base_version: str


def encode_head(state: HeadState, *, kind: str, user_id: str, base_version: str) -> bytes:
    tensors = state.tensors()
    return encode_tensors(tensors, {
        "format": HEAD_FORMAT, "kind": kind, "user_id": user_id, "base_version": base_version,
        "dim": str(state.dim), "tensors_sha256": _tensors_digest(tensors),
    })


def decode_head(data: bytes, where: str) -> HeadFile:
    """Parse and self-check a head file (format, tensor digest, shapes)."""
    tensors, meta = decode_tensors(data, where)
    if meta.get("format") != HEAD_FORMAT:
        raise ArtifactError(f"{where}: not a {HEAD_FORMAT} file, got format {meta.get('format')!r}")
    if _tensors_digest(tensors) != meta.get("tensors_sha256"):
        raise ArtifactError(f"{where}: tensor checksum does not match the file's own record")
    try:
        state = HeadState.from_tensors(tensors)
    except ValueError as exc:
        raise ArtifactError(f"{where}: malformed head: {exc}") from exc
    missing = [k for k in ("kind", "user_id", "base_version") if k not in meta]
    if missing:
        raise ArtifactError(f"{where}: head metadata lacks {missing}")
    return HeadFile(state, meta["kind"], meta["user_id"], meta["base_version"])
