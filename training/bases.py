"""Publishing trained models to the registry, and loading a kind's base back from it.

The registry has one current base version for everything it holds, while HYDRA has two models
(reranker and adapter), each with its own base. So a published base is a *bundle*: one
safetensors state dict holding both encoders under the prefixes `reranker.` and `adapter.`, and a
config `{"format": "hydralm-base-bundle/1", "kinds": {kind: {"model": ModelConfig, "dim": d,
"info": {...}}}}` (the format of `hydralm.scoring.bundle`, which serving reads it with).
Publishing a new bundle invalidates every head saved for the old version, so the heads of a kind
that was not retrained are saved again with the new version (same tensors: its base did not
change); heads of a retrained kind are the ones just trained (new users are refitted by
`hydralm fit-users`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor

from hydralm.artifacts import Registry
from hydralm.artifacts.serialize import sha256
from hydralm.errors import ArtifactError, NotFoundError
from hydralm.model import (
    AnyHeadState,
    BaseEncoder,
    HeadConfig,
    HeadState,
    ModelConfig,
    shared_digest,
)
from hydralm.model.zero_fit import Router
from hydralm.scoring.bundle import (
    BUNDLE_FORMAT,
    bundle_document,
    bundle_router,
    load_bundle_encoders,
)

__all__ = ["BUNDLE_FORMAT", "TrainedModel", "add_router", "bundle_config", "load_kind_base",
           "publish_models", "republish_with_head"]

log = logging.getLogger(__name__)

KINDS = ("reranker", "adapter")


@dataclass(frozen=True)
class TrainedModel:
    """One trained kind: its base weights and config, its users' heads and the global head."""

    kind: str
    base_state: Mapping[str, Tensor]
    model: ModelConfig
    heads: Mapping[str, AnyHeadState]
    global_head: HeadState | None
    info: Mapping[str, Any]


def _carried_over(registry: Registry, kind: str, state: Mapping[str, Tensor],
                  config: Mapping[str, Any]) -> TrainedModel | None:
    """The kind as the registry holds it now (base part, heads, global head), or None."""
    entry = config.get("kinds", {}).get(kind)
    if entry is None:
        return None
    base_state = _kind_state(state, kind)
    # Only heads fitted on the current base come along: a head left on an older base (a new
    # user's, fitted before the other kind was retrained) cannot be loaded any more; the fit
    # stage refits it on the new base.
    manifest = registry.manifest()
    index = registry.head_index(kind, manifest)
    stale = sorted(u for u, e in index.items() if e.base_version != manifest.base_version)
    if stale:
        log.info("%s: %d heads fitted on an older base are not carried over (refit them): %s",
                 kind, len(stale), ", ".join(stale[:5]) + (" ..." if len(stale) > 5 else ""))
    heads = {user: registry.load_head(kind, user) for user in sorted(index)
             if user not in stale}
    return TrainedModel(kind, base_state, ModelConfig.from_dict(entry["model"]), heads,
                        _global_head(registry, kind), entry.get("info", {}))


def _kind_state(state: Mapping[str, Tensor], kind: str) -> dict[str, Tensor]:
    """The kind's encoder weights out of a bundle's state dict."""
    prefix = f"{kind}."
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def _global_head(registry: Registry, kind: str) -> HeadState | None:
    try:
        return registry.load_global_head(kind)
    except NotFoundError:
        return None


def _stored_as(global_head: HeadState | None, head: HeadConfig | None) -> HeadState | None:
    """`global_head` in the storage dtype of a dense `head` (what training publishes for it)."""
    if global_head is None or head is None or head.form != "dense":
        return global_head
    return replace(global_head, dtype=head.dtype)


def _check_residual(model: TrainedModel) -> None:
    """A residual kind's heads must all name its global head's w1 (their shared first layer)."""
    if model.model.head.form != "residual" or not model.heads:
        return
    if model.global_head is None or not isinstance(model.global_head, HeadState):
        raise ArtifactError(f"{model.kind}: residual heads need a dense global head (its w1 is "
                            f"their shared first layer), got {type(model.global_head).__name__}")
    digest = shared_digest(model.global_head.w1)
    wrong = sorted(u for u, h in model.heads.items() if getattr(h, "shared", None) != digest)
    if wrong:
        raise ArtifactError(f"{model.kind}: the heads of {wrong[:5]} do not name the global "
                            f"head's w1 {digest[:12]} as their shared first layer")


def publish_models(registry: Registry, trained: Sequence[TrainedModel],
                   router: Router | None = None) -> str:
    """Publish a bundle with the trained kinds (and the other kind carried over, with the
    current bundle's zero-fit router unless `router` replaces it); save every head with the new
    version. Returns the new base version."""
    models = {t.kind: t for t in trained}
    if registry.base_version() is not None and len(models) < len(KINDS):
        state, config = _current_bundle(registry, "; publish both kinds")
        for kind in KINDS:
            if kind not in models:
                old = _carried_over(registry, kind, state, config)
                if old is not None:
                    models[kind] = old
        if router is None:
            router = bundle_router(state, config)
    for model in models.values():
        _check_residual(model)
    bundle: dict[str, Tensor] = {}
    kinds: dict[str, Any] = {}
    for kind, model in sorted(models.items()):
        bundle.update({f"{kind}.{k}": v for k, v in model.base_state.items()})
        dim = (next(iter(model.heads.values())).dim if model.heads
               else model.global_head.dim if model.global_head is not None else None)
        kinds[kind] = {"model": model.model.model_dump(mode="json"), "dim": dim,
                       "info": dict(model.info)}
    version = registry.publish_base(*bundle_document(bundle, kinds, router))
    for kind, model in sorted(models.items()):
        if model.heads:
            registry.save_heads(kind, dict(model.heads), version)
        if model.global_head is not None:
            registry.save_global_head(kind, model.global_head, version)
        log.info("published %s: %d heads%s on base %s", kind, len(model.heads),
                 " + global head" if model.global_head is not None else "", version)
    return version


def _current_bundle(registry: Registry, hint: str = "") -> tuple[dict[str, Tensor], dict]:
    """The registry's current base as (state, config); ArtifactError unless it is a bundle."""
    state, config = registry.load_base()
    if config.get("format") != BUNDLE_FORMAT:
        raise ArtifactError(f"the current base of {registry.storage.uri} is not a "
                            f"{BUNDLE_FORMAT} bundle (format {config.get('format')!r}){hint}")
    return state, config


def add_router(registry: Registry, router: Router) -> str:
    """Publish the current bases again with `router` (every kind and head carried over, the
    same weights); returns the new base version."""
    state, config = _current_bundle(registry)
    models = [m for m in (_carried_over(registry, kind, state, config) for kind in KINDS) if m]
    return publish_models(registry, models, router)


def republish_with_head(source: Registry, target: Registry, head: HeadConfig | None) -> str:
    """Publish `source`'s current bases and global heads to `target` with every kind's users'
    heads in the form `head` (None: each kind's own) and no user heads (new users' heads are then
    fitted in that form on the very same bases); returns `target`'s base version. A dense `head`
    also stores the global heads in its dtype, as a job trained with that head would (the fits
    start from the global head, so an int8 default is measured with an int8 start); other forms
    keep the source's global heads. A `target` already holding these bases in that form is left
    as it is, with its heads."""
    state, config = _current_bundle(source)
    wanted = {kind: entry if head is None else {
        **entry, "model": {**entry["model"], "head": head.model_dump(mode="json")}}
        for kind, entry in config["kinds"].items()}
    existing = bundle_config(target)
    if existing is not None and all(
            existing["kinds"].get(k, {}).get("model") == e["model"]
            and existing["kinds"][k].get("info") == e.get("info") for k, e in wanted.items()):
        return target.base_version()
    models = [TrainedModel(kind, _kind_state(state, kind), ModelConfig.from_dict(entry["model"]),
                           {}, _stored_as(_global_head(source, kind), head), entry.get("info", {}))
              for kind, entry in sorted(wanted.items())]
    return publish_models(target, models)


def bundle_config(registry: Registry, version: str | None = None) -> dict[str, Any] | None:
    """The config of the current (or given) bundle without reading its weights; None when the
    registry has no base yet or the base is not a bundle."""
    manifest = registry.manifest()
    version = version or manifest.base_version
    entry = manifest.bases.get(version) if version else None
    if entry is None:
        return None
    data = registry.storage.get(entry.config.key)
    if sha256(data) != entry.config.sha256:
        raise ArtifactError(f"base {version}: checksum mismatch for {entry.config.key!r}")
    config = json.loads(data)
    return config if config.get("format") == BUNDLE_FORMAT else None


def load_kind_base(registry: Registry, kind: str, *, device: str | torch.device = "cpu",
                   version: str | None = None) -> tuple[BaseEncoder, str]:
    """The `kind` encoder of the current (or given) bundle, in eval mode, and its version."""
    version = version or registry.base_version()
    if version is None:
        raise NotFoundError(f"no base in the registry {registry.storage.uri}: run "
                            "`hydralm train` first")
    return load_bundle_encoders(registry, [kind], version, device=device)[kind], version
