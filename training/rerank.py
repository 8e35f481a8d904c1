"""The trained reranker as the adapter labels' retrieval: which one to use, and loading it.

`labels.adapter_retrieval` picks how an adapter prompt's items are chosen: `bm25` (BM25 order),
`rerank` (the registry's reranker; an error when there is none) or `auto` (rerank when the
registry has a reranker, else BM25). Training users' prompts are reranked with their own head;
new users' prompts with the global head (their labels are made before their heads exist). The
reranker's identity goes into the label shards' key, so labels made with another reranker (or
with BM25) are never mixed with these.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from hydralm.artifacts import Registry
from hydralm.errors import NotFoundError
from hydralm.jobconfig import JobConfig
from hydralm.labels import RerankFn
from hydralm.model import HydraModel
from hydralm.pipeline import reranker_pairs
from hydralm.scoring.forward import temporary_bank
from hydralm.scoring.registry_view import RegistryView
from training.bases import bundle_config, load_kind_base

__all__ = ["RerankSpec", "load_rerank", "resolve_retrieval"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RerankSpec:
    """Which reranker reorders adapter prompts: small, so it travels to Ray actors."""

    registry: str
    base_version: str
    tag: str
    user_heads: bool


def resolve_retrieval(cfg: JobConfig, stage: str) -> RerankSpec | None:
    """The reranker to use for `stage`'s adapter labels, or None for BM25 order."""
    mode = cfg.labels.adapter_retrieval
    if mode == "bm25":
        return None
    registry = Registry(cfg.paths.registry)
    config = bundle_config(registry)
    reranker = (config or {}).get("kinds", {}).get("reranker")
    if reranker is None or "reranker" not in registry.manifest().global_heads:
        if mode == "rerank":
            raise NotFoundError(f"labels.adapter_retrieval is 'rerank' but {cfg.paths.registry} "
                                "has no trained reranker: run `hydralm train --model reranker` "
                                "first, or set adapter_retrieval: auto or bm25")
        return None
    info = reranker.get("info", {})
    tag = f"rerank-{info.get('run', '?')}-{info.get('global_step', '?')}-{stage}"
    return RerankSpec(cfg.paths.registry, registry.base_version(), tag, stage == "train")


def load_rerank(spec: RerankSpec, task) -> RerankFn:
    """A RerankFn scoring (query, item) pairs with the spec's reranker (loaded once)."""
    registry = Registry(spec.registry)
    view = RegistryView(registry)     # how serving loads heads: a residual one with its layer
    encoder, _ = load_kind_base(registry, "reranker", version=spec.base_version)
    global_head = registry.load_global_head("reranker")
    models: dict[str, HydraModel] = {}

    def model_for(user_id: str) -> HydraModel:
        key = user_id if spec.user_heads else ""
        if key not in models:
            head = global_head
            if spec.user_heads:
                try:
                    head = view.load_head("reranker", user_id, spec.base_version)
                except NotFoundError:
                    log.info("user %r has no reranker head: using the global head", user_id)
            models[key] = HydraModel(encoder, temporary_bank([head], "cpu")).eval()
        return models[key]

    def rerank(user_id: str, query_input: str, items: Sequence[Mapping]) -> list[float]:
        firsts, seconds = reranker_pairs(task, query_input, list(items))
        return model_for(user_id).score(firsts, seconds, [0] * len(items)).tolist()

    return rerank
