"""Which number format the frozen base encoder runs in: bf16 where the hardware has native bf16,
fp32 elsewhere.

Native bf16 means a matrix unit or vector instructions that multiply bf16 directly: on x86 CPUs the
`amx_bf16` (Intel AMX tiles) or `avx512_bf16` (VDPBF16PS) flags of /proc/cpuinfo, on CUDA a GPU
that `torch.cuda.is_bf16_supported()` accepts. Without them torch emulates bf16 through fp32, which
is slower than fp32 itself, so "auto" picks fp32 there. Measured with MiniLM on serve_load's pairs:
1.7x the fp32 rate with AVX512-BF16 (AMD Zen 4), about 3x with AMX (Intel Xeon), pooled outputs at
cosine 0.9999 to fp32 (docs/serving-scorer.md).

Only the encoder's weights and activations change: pooled vectors come back as fp32 and per-user
heads always compute in fp32. Training keeps fp32 (its encoders are never cast).

Every config that loads a frozen base for inference (the Scorer's `ScorerArgs`, the fit stage's
`FitConfig`, the quality benchmark's `EvalConfig`) has one `precision` field built by
`precision_field()`, and every caller resolves it with `resolve_precision`.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field

__all__ = ["NATIVE_BF16_CPU_FLAGS", "Precision", "ResolvedPrecision", "cpu_flags", "cpu_model",
           "native_bf16", "precision_dtype", "precision_field", "resolve_precision"]

log = logging.getLogger(__name__)

Precision = Literal["auto", "bf16", "fp32"]
ResolvedPrecision = Literal["bf16", "fp32"]

# CPU flags (as /proc/cpuinfo spells them) that give bf16 matrix products in hardware.
NATIVE_BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")
_CPUINFO = Path("/proc/cpuinfo")
_DTYPES: dict[str, torch.dtype] = {"bf16": torch.bfloat16, "fp32": torch.float32}


def _cpuinfo_field(name: str) -> str:
    """The first `name : value` of /proc/cpuinfo ('' where there is none, e.g. not Linux)."""
    try:
        text = _CPUINFO.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == name:
            return value.strip()
    return ""


@functools.cache
def cpu_flags() -> frozenset[str]:
    """This CPU's feature flags from /proc/cpuinfo (empty where it cannot be read)."""
    return frozenset(_cpuinfo_field("flags").split())


@functools.cache
def cpu_model() -> str:
    """This CPU's model name from /proc/cpuinfo ('unknown' where it cannot be read)."""
    return _cpuinfo_field("model name") or "unknown"


def native_bf16(device: str | torch.device = "cpu") -> bool:
    """Whether `device` multiplies bf16 in hardware (see the module docstring)."""
    kind = torch.device(device).type
    if kind == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if kind == "cpu":
        return any(flag in cpu_flags() for flag in NATIVE_BF16_CPU_FLAGS)
    return False


def resolve_precision(requested: Precision, device: str | torch.device = "cpu",
                      ) -> ResolvedPrecision:
    """'auto' -> 'bf16' where `device` has native bf16, else 'fp32'; 'bf16'/'fp32' as asked (a
    forced 'bf16' without native support works, emulated and slow, and says so in the log)."""
    if requested not in ("auto", "bf16", "fp32"):
        raise ValueError(f"precision must be 'auto', 'bf16' or 'fp32', got {requested!r}")
    native = native_bf16(device)
    if requested == "auto":
        return "bf16" if native else "fp32"
    if requested == "bf16" and not native:
        log.warning("precision 'bf16' on %s without native bf16 (no %s): emulated, slower than "
                    "fp32", device, " or ".join(NATIVE_BF16_CPU_FLAGS))
    return requested


def precision_dtype(precision: ResolvedPrecision) -> torch.dtype:
    """torch.bfloat16 or torch.float32."""
    try:
        return _DTYPES[precision]
    except KeyError:
        raise ValueError(f"precision must be 'bf16' or 'fp32' (resolve 'auto' first), "
                         f"got {precision!r}") from None


def precision_field() -> Any:
    """The `precision` field every inference config shares (same default, same description)."""
    return Field(
        "auto",
        description="Number format of the frozen base encoder: 'auto' runs bf16 where the "
                    "device has native bf16 (CPU flags amx_bf16 or avx512_bf16; a CUDA GPU with "
                    "bf16), fp32 elsewhere; 'bf16' or 'fp32' force one. Heads always compute in "
                    "fp32.")
