"""A registry with random heads on real bases: for load benchmarks, tests and smoke checks of the
serving path before any training ran (the scores mean nothing; the shapes and costs are real)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from hydralm.artifacts import Registry
from hydralm.model import AnyHeadState, BaseEncoder, HeadBank, HeadConfig, HeadState, ModelConfig
from hydralm.model.zero_fit import Router
from hydralm.scoring.bundle import publish_bundle
from hydralm.scoring.types import MODEL_KINDS

__all__ = ["publish_random_registry", "random_heads"]


def random_heads(count: int, dim: int, *, seed: int = 0, scale: float = 4.0,
                 head: HeadConfig | None = None,
                 shared: torch.Tensor | None = None) -> list[AnyHeadState]:
    """`count` heads of form `head` (default: `HeadConfig()`, dense int8) drawn like a fresh
    HeadBank, times `scale` (so users' scores differ visibly instead of all sitting near 0.5; a
    low-rank head's `b` factor is left unscaled, so its w1 = a @ b is scaled once). Residual heads
    are drawn on `shared` (the kind's first layer, used as given) with a random `b` instead of
    zeros."""
    generator = torch.Generator().manual_seed(seed)
    bank = HeadBank(count, dim, generator=generator, head=head, shared=shared)
    fields = {}
    if bank.shared_w1 is not None:
        with torch.no_grad():
            bound = bank.head.rank ** -0.5
            bank.b.uniform_(-bound, bound, generator=generator)
        fields = {"shared": bank.shared_sha}
    heads = []
    for i in range(count):
        state = bank.extract(i)
        tensors = {n: t * (1.0 if n == "b" else scale) for n, t in state.tensors().items()}
        heads.append(type(state).from_tensors(tensors, state.dtype, **fields))
    return heads


def publish_random_registry(registry: Registry, users: Sequence[str], *,
                            config: ModelConfig | None = None,
                            encoders: Mapping[str, BaseEncoder] | None = None,
                            kinds: Sequence[str] = MODEL_KINDS, seed: int = 0,
                            with_global: bool = True, router: Router | None = None) -> str:
    """Publish a base bundle (one encoder per kind, by default `config`'s encoder untrained) and a
    random head of `config.head`'s form per user and kind (plus a global head); returns the base
    version. Residual kinds get a random shared first layer: the global head is dense with that
    w1, and the users' heads name it. `router`: a zero-fit router to publish with the bases."""
    config = config or ModelConfig()
    if encoders is None:
        encoder = BaseEncoder.from_config(config)
        encoders = {kind: encoder for kind in kinds}
    version = publish_bundle(registry, {kind: (encoders[kind], config) for kind in kinds},
                             router)
    for k, kind in enumerate(kinds):
        dim = encoders[kind].dim
        shared = None
        if config.head.form == "residual":
            generator = torch.Generator().manual_seed(seed * 1000 + k + 500)
            shared = 4.0 * HeadBank.fresh_shared(dim, generator)
        heads = random_heads(len(users) + 1, dim, seed=seed * 1000 + k, head=config.head,
                             shared=shared)
        if users:
            registry.save_heads(kind, dict(zip(users, heads, strict=False)), version)
        if with_global:
            last = heads[-1]
            global_head = last if shared is None else HeadState(shared, last.b1, last.w2,
                                                                 last.b2)
            registry.save_global_head(kind, global_head, version)
    return version
