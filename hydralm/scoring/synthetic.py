"""A registry with random heads on real bases: for load benchmarks, tests and smoke checks of the
serving path before any training ran (the scores mean nothing; the shapes and costs are real)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from hydralm.artifacts import Registry
from hydralm.model import BaseEncoder, HeadBank, HeadState, ModelConfig
from hydralm.scoring.bundle import publish_bundle
from hydralm.scoring.types import MODEL_KINDS

__all__ = ["publish_random_registry", "random_heads"]


def random_heads(count: int, dim: int, *, seed: int = 0, scale: float = 4.0) -> list[HeadState]:
    """`count` heads drawn like a fresh HeadBank, times `scale` (so users' scores differ
    visibly instead of all sitting near 0.5)."""
    generator = torch.Generator().manual_seed(seed)
    bank = HeadBank(count, dim, generator=generator)
    heads = []
    for i in range(count):
        head = bank.extract(i)
        heads.append(HeadState(head.w1 * scale, head.b1 * scale, head.w2 * scale,
                               head.b2 * scale))
    return heads


def publish_random_registry(registry: Registry, users: Sequence[str], *,
                            config: ModelConfig | None = None,
                            encoders: Mapping[str, BaseEncoder] | None = None,
                            kinds: Sequence[str] = MODEL_KINDS, seed: int = 0,
                            with_global: bool = True) -> str:
    """Publish a base bundle (one encoder per kind, by default `config`'s encoder untrained) and a
    random head per user and kind (plus a global head); returns the base version."""
    config = config or ModelConfig()
    if encoders is None:
        encoder = BaseEncoder.from_config(config)
        encoders = {kind: encoder for kind in kinds}
    version = publish_bundle(registry, {kind: (encoders[kind], config) for kind in kinds})
    for k, kind in enumerate(kinds):
        dim = encoders[kind].dim
        heads = random_heads(len(users) + 1, dim, seed=seed * 1000 + k)
        if users:
            registry.save_heads(kind, dict(zip(users, heads, strict=False)), version)
        if with_global:
            registry.save_global_head(kind, heads[-1], version)
    return version
