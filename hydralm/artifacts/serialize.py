"""Bytes on disk: safetensors files whose string metadata carries each artifact's config.

A head file (format hydralm-head/2) holds its form's tensors (dense: w1, b1, w2, b2; low-rank and
residual: a, b, b1, w2, b2) in its storage dtype and the metadata {format, kind, user_id,
base_version, dim, head_form, head_rank (low-rank, residual), shared_w1_sha256 (residual: the
`shared_digest` of the shared first layer it was fitted on, which a bank checks), head_dtype,
tensors_sha256}; the manifest holds the sha256 of the whole file. Both are checked on load.
Storage dtypes:
- float32: the tensors as they are; bfloat16: every tensor cast to bfloat16;
- int8: each matrix symmetric int8 with a float32 scale per channel along its shorter side (the
  columns of a square one) stored as `<name>.scale`; vectors (the biases) in bfloat16.
Decoding always gives float32 tensors. Files of format hydralm-head/1 (dense float32, written
before head forms existed) still load.
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
from hydralm.model.config import HeadDtype
from hydralm.model.heads import AnyHeadState, ResidualHeadState, head_state_class

__all__ = ["HeadFile", "decode_head", "decode_tensors", "dequantize", "encode_head",
           "encode_tensors", "quantize", "sha256"]

HEAD_FORMAT = "hydralm-head/2"
HEAD_FORMAT_V1 = "hydralm-head/1"          # dense float32, no form fields: still read
_SCALE = ".scale"


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


def _channel_axis(t: Tensor) -> int:
    """The axis with one scale per index: the shorter side (the columns of a square matrix)."""
    return 0 if t.shape[0] < t.shape[1] else 1


def quantize(tensors: Mapping[str, Tensor], dtype: HeadDtype) -> dict[str, Tensor]:
    """float32 tensors as a head file of storage `dtype` holds them (see the module docstring)."""
    if dtype == "float32":
        return dict(tensors)
    if dtype == "bfloat16":
        return {name: t.to(torch.bfloat16) for name, t in tensors.items()}
    if dtype != "int8":
        raise ValueError(f"head storage dtype must be float32, bfloat16 or int8, got {dtype!r}")
    out: dict[str, Tensor] = {}
    for name, t in tensors.items():
        if t.dim() != 2:
            out[name] = t.to(torch.bfloat16)
            continue
        axis = _channel_axis(t)
        amax = t.abs().amax(dim=1 - axis, keepdim=True)                     # one per channel
        scale = torch.where(amax > 0, amax / 127.0, torch.ones_like(amax))
        out[name] = torch.round(t / scale).clamp(-127, 127).to(torch.int8)
        out[name + _SCALE] = scale.reshape(-1).float()
    return out


def dequantize(stored: Mapping[str, Tensor], where: str) -> dict[str, Tensor]:
    """float32 tensors from a head file's stored ones (int8 ones times their scales)."""
    out: dict[str, Tensor] = {}
    for name, t in stored.items():
        if name.endswith(_SCALE):
            continue
        if t.dtype == torch.int8:
            scale = stored.get(name + _SCALE)
            if t.dim() != 2 or scale is None or scale.shape != (t.shape[_channel_axis(t)],):
                raise ArtifactError(f"{where}: int8 tensor {name!r} {tuple(t.shape)} lacks a "
                                    f"matching per-channel scale {name + _SCALE!r}")
            shape = (-1, 1) if _channel_axis(t) == 0 else (1, -1)
            out[name] = t.float() * scale.float().reshape(shape)
        else:
            out[name] = t.float()
    return out


@dataclass(frozen=True)
class HeadFile:
    """A decoded head file: the head and the facts it carries about itself."""

    state: AnyHeadState
    kind: str
    user_id: str
    base_version: str


def encode_head(state: AnyHeadState, *, kind: str, user_id: str, base_version: str) -> bytes:
    """A head file of `state`'s form, stored in `state.dtype`."""
    stored = quantize(state.tensors(), state.dtype)
    meta = {"format": HEAD_FORMAT, "kind": kind, "user_id": user_id,
            "base_version": base_version, "dim": str(state.dim), "head_form": state.form,
            "head_dtype": state.dtype, "tensors_sha256": _tensors_digest(stored)}
    if state.rank is not None:
        meta["head_rank"] = str(state.rank)
    if isinstance(state, ResidualHeadState):
        meta["shared_w1_sha256"] = state.shared
    return encode_tensors(stored, meta)


def decode_head(data: bytes, where: str) -> HeadFile:
    """Parse and self-check a head file (format, tensor digest, form, shapes); float32 tensors."""
    stored, meta = decode_tensors(data, where)
    fmt = meta.get("format")
    if fmt not in (HEAD_FORMAT, HEAD_FORMAT_V1):
        raise ArtifactError(f"{where}: not a {HEAD_FORMAT} file, got format {fmt!r}")
    if _tensors_digest(stored) != meta.get("tensors_sha256"):
        raise ArtifactError(f"{where}: tensor checksum does not match the file's own record")
    form, dtype = meta.get("head_form", "dense"), meta.get("head_dtype", "float32")
    try:
        if dtype not in ("float32", "bfloat16", "int8"):
            raise ValueError(f"unknown storage dtype {dtype!r}")
        fields = {"shared": meta.get("shared_w1_sha256", "")} if form == "residual" else {}
        state = head_state_class(form).from_tensors(dequantize(stored, where), dtype, **fields)
        if state.rank is not None and str(state.rank) != meta.get("head_rank"):
            raise ValueError(f"rank {state.rank} but metadata says {meta.get('head_rank')!r}")
    except ValueError as exc:
        raise ArtifactError(f"{where}: malformed head: {exc}") from exc
    missing = [k for k in ("kind", "user_id", "base_version") if k not in meta]
    if missing:
        raise ArtifactError(f"{where}: head metadata lacks {missing}")
    return HeadFile(state, meta["kind"], meta["user_id"], meta["base_version"])
