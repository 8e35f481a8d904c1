"""What the machine can do, for figures reported against it: the CPU's model, flags and an
estimated peak GFLOP/s per precision, and the FLOPs of one encoder pass over a pair.

Not a benchmark itself (`make bench-quick` runs it like the others; it does nothing).

Peak (per precision) = cores x clock_GHz x FLOP per cycle per core, where
- cores: the CPUs this process may run on, counted once per physical core (/proc/cpuinfo
  `siblings` / `cpu cores` is the hardware threads per core);
- clock: /proc/cpuinfo `cpu MHz` (under a hypervisor usually the nominal clock; turbo is not
  counted, so the peak may be underestimated by the turbo ratio);
- FLOP per cycle per core, from the flags (an FMA counts 2 FLOP; two FMA ports on Intel cores,
  AMD Zen 4 runs 512-bit vectors as two 256-bit halves):
    fp32: avx512f 64 (AMD 32); avx2 + fma 32; else 8;
    bf16: amx_bf16 1024 (one TMUL: a 16x32 by 32x16 bf16 tile product every 16 cycles);
          avx512_bf16 128 (VDPBF16PS on two ports; AMD 64); else the fp32 figure (emulated).
The estimate and every input are written next to the figures.
"""

from __future__ import annotations

import os
from typing import Any

from hydralm.model.precision import cpu_flags, cpu_model

__all__ = ["encoder_flops", "hardware"]

_FORMULA = "peak_gflops = cores x clock_ghz x flops_per_cycle_per_core"


def _cpuinfo(name: str) -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, sep, value = line.partition(":")
                if sep and key.strip() == name:
                    return value.strip()
    except OSError:
        pass
    return ""


def _flops_per_cycle(flags: frozenset[str], amd: bool) -> dict[str, tuple[int, str]]:
    """(FLOP per cycle per core, why) for fp32 and bf16."""
    if "avx512f" in flags:
        fp32 = (32, "AVX-512 FMA as two 256-bit halves (AMD)") if amd else \
            (64, "2 AVX-512 FMA ports x 16 lanes x 2")
    elif {"avx2", "fma"} <= flags:
        fp32 = (32, "2 AVX2 FMA ports x 8 lanes x 2")
    else:
        fp32 = (8, "SSE, no FMA")
    if "amx_bf16" in flags:
        bf16 = (1024, "AMX TMUL: 16x32 @ 32x16 bf16 tile product per 16 cycles")
    elif "avx512_bf16" in flags:
        bf16 = (64, "VDPBF16PS as two 256-bit halves (AMD)") if amd else \
            (128, "VDPBF16PS on 2 ports x 16 lanes x 2 pairs x 2")
    else:
        bf16 = (fp32[0], "no native bf16: emulated through fp32")
    return {"fp32": fp32, "bf16": bf16}


def hardware(precision: str) -> dict[str, Any]:
    """The `hardware` block of a result: CPU model, flags, and the peak for `precision`
    ('bf16' or 'fp32'), with the estimate's inputs."""
    flags = cpu_flags()
    amd = "AMD" in _cpuinfo("vendor_id").upper() or "AMD" in cpu_model().upper()
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    siblings, cores_per_socket = _cpuinfo("siblings"), _cpuinfo("cpu cores")
    threads_per_core = (int(siblings) // int(cores_per_socket)
                        if siblings.isdigit() and cores_per_socket.isdigit()
                        and int(cores_per_socket) else 1) or 1
    cores = max(1, (cpus or 1) // threads_per_core)
    try:
        clock_ghz = float(_cpuinfo("cpu MHz")) / 1000.0
    except ValueError:
        clock_ghz = 0.0
    per_cycle = _flops_per_cycle(flags, amd)
    peaks = {p: round(cores * clock_ghz * f, 1) for p, (f, _) in per_cycle.items()}
    out: dict[str, Any] = {
        "cpu_model": cpu_model(),
        "flags": sorted(flags),
        "peak_gflops": peaks[precision],
        "peak_estimate": {
            "formula": _FORMULA, "precision": precision, "cores": cores,
            "cpus": cpus, "threads_per_core": threads_per_core, "clock_ghz": clock_ghz,
            "clock_source": "/proc/cpuinfo cpu MHz (nominal under a hypervisor; no turbo)",
            "vendor_amd": amd,
            "flops_per_cycle_per_core": {p: f for p, (f, _) in per_cycle.items()},
            "flops_per_cycle_basis": {p: why for p, (_, why) in per_cycle.items()},
            "peak_gflops_by_precision": peaks,
        },
    }
    try:
        import torch

        if torch.cuda.is_available():
            out["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return out


def encoder_flops(config, tokens: list[int]) -> dict[str, float]:
    """FLOPs of one encoder forward over pairs of these token counts (no padding counted), from
    a BERT-like config: per layer and token 2 x (4 d^2 + 2 d i) for the projections and the
    feed-forward, plus 4 T d for attention scores and the weighted sum over T tokens."""
    d, inner, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    per_pair = [layers * (2 * t * (4 * d * d + 2 * d * inner) + 4 * t * t * d) for t in tokens]
    return {"mean_tokens": sum(tokens) / len(tokens),
            "gflop_per_pair": sum(per_pair) / len(per_pair) / 1e9}
