"""The base bundle: how the registry's one current base holds both HYDRA encoders.

The registry has one current base version, while the reranker and the adapter each have their own
base. A published base is therefore a bundle: one state dict with each encoder's `BaseEncoder`
weights under the prefix `<kind>.`, and the config
`{"format": "hydralm-base-bundle/1", "kinds": {kind: {"model": ModelConfig, "dim": d, ...}},
"zero_fit": {"users": [...], "k": k, "dim": D, "k_by_kind": {kind: k}, "choice": {...}}}`
(`k_by_kind` and `choice` only where k was chosen per kind: `train.zero_fit_users: auto`).
A kind's entry may also hold `info` (the training run: its name, steps, loss; for the adapter
`pairs`, the pair format it was trained on, `hydralm.pipeline.pairs.ADAPTER_PAIRS`; an adapter
whose bundle records another format or none, one trained before c1e0897, loads with a warning).
The ModelConfig's `head` says which head form (and storage dtype) the kind's heads have; a bundle
written before head forms existed has none and means the dense head. `zero_fit` (optional: bundles
published before it have none, and serve no zero-fit heads) is the router of zero-fit heads
(hydralm/model/zero_fit.py): the training users' history vectors, whose tensors are stored under
the prefix `zero_fit.`, beside the encoders.
This is the format `training/bases.py` publishes; it is read here because serving (which must not
import training) loads it too.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from hydralm.artifacts import Registry
from hydralm.artifacts.serialize import sha256
from hydralm.errors import ArtifactError, NotFoundError
from hydralm.model import BaseEncoder, HeadConfig, ModelConfig
from hydralm.model.zero_fit import Router
from hydralm.pipeline.pairs import ADAPTER_PAIRS

__all__ = ["BUNDLE_FORMAT", "ROUTER_PREFIX", "bundle_document", "bundle_head_configs",
           "bundle_router", "load_bundle", "load_bundle_encoders", "pairs_warning",
           "publish_bundle", "read_bundle_config"]

log = logging.getLogger(__name__)

BUNDLE_FORMAT = "hydralm-base-bundle/1"
ROUTER_PREFIX = "zero_fit."


def publish_bundle(registry: Registry, encoders: Mapping[str, tuple[BaseEncoder, ModelConfig]],
                   router: Router | None = None) -> str:
    """Publish the encoders (and a zero-fit router) as the registry's current base (a bundle);
    returns its version. An adapter is recorded as reading this version's pairs.

    Heads saved for an earlier base stop loading until saved again with the new version."""
    state: dict[str, Tensor] = {}
    kinds: dict[str, Any] = {}
    for kind, (encoder, config) in sorted(encoders.items()):
        state.update({f"{kind}.{k}": v for k, v in encoder.state_dict().items()})
        kinds[kind] = {"model": config.model_dump(mode="json"), "dim": encoder.dim}
        if kind == "adapter":
            kinds[kind]["info"] = {"pairs": ADAPTER_PAIRS}
    return registry.publish_base(*bundle_document(state, kinds, router))


def bundle_document(state: Mapping[str, Tensor], kinds: Mapping[str, Any],
                    router: Router | None) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """The bundle's tensors and config from the kinds' prefixed tensors and entries, and the
    router (its tensors under ROUTER_PREFIX, its config under "zero_fit")."""
    tensors, config = dict(state), {"format": BUNDLE_FORMAT, "kinds": dict(kinds)}
    if router is not None:
        tensors.update({f"{ROUTER_PREFIX}{k}": v for k, v in router.state().items()})
        config["zero_fit"] = router.config()
    return tensors, config


def load_bundle_encoders(registry: Registry, kinds: Sequence[str], version: str, *,
                         device: str | torch.device = "cpu") -> dict[str, BaseEncoder]:
    """Each kind's encoder of bundle `version`, in eval mode (the bundle is read once)."""
    return load_bundle(registry, kinds, version, device=device)[0]


def bundle_router(state: Mapping[str, Tensor], config: Mapping[str, Any]) -> Router | None:
    """The zero-fit router a bundle holds (None when it has none)."""
    if "zero_fit" not in config:
        return None
    tensors = {k[len(ROUTER_PREFIX):]: v for k, v in state.items() if k.startswith(ROUTER_PREFIX)}
    try:
        return Router.from_state(tensors, config["zero_fit"])
    except (KeyError, ValueError, TypeError) as exc:
        raise ArtifactError(f"the bundle's zero_fit router is malformed: {exc!r}") from exc


def load_bundle(registry: Registry, kinds: Sequence[str], version: str, *,
                device: str | torch.device = "cpu"
                ) -> tuple[dict[str, BaseEncoder], Router | None]:
    """Each kind's encoder of bundle `version`, in eval mode, and its zero-fit router (None when
    it has none); the bundle is read once."""
    state, config = registry.load_base(version)
    if config.get("format") != BUNDLE_FORMAT:
        raise ArtifactError(f"base {version} in {registry.storage.uri} is not a "
                            f"{BUNDLE_FORMAT} bundle, got format {config.get('format')!r}")
    encoders = {}
    for kind in kinds:
        entry = config.get("kinds", {}).get(kind)
        if entry is None:
            raise NotFoundError(f"base {version} in {registry.storage.uri} has no {kind} "
                                f"encoder (it has {sorted(config.get('kinds', {}))})")
        encoder = BaseEncoder.from_config(ModelConfig.from_dict(entry["model"],
                                                                source=f"{kind} base config"))
        prefix = f"{kind}."
        try:
            encoder.load_state_dict({k[len(prefix):]: v for k, v in state.items()
                                     if k.startswith(prefix)})
        except RuntimeError as exc:
            raise ArtifactError(f"the {kind} weights of base {version} do not fit its "
                                f"encoder: {exc}") from exc
        encoders[kind] = encoder.to(device).eval()
        log.info("loaded the %s encoder of base %s", kind, version)
        if kind == "adapter":
            _check_pairs(entry, version, registry.storage.uri)
    return encoders, bundle_router(state, config)


def pairs_warning(entry: Mapping[str, Any]) -> str | None:
    """Why an adapter (its bundle entry) does not read what this version shows it, or None: it
    was trained on another pair format, or on one no bundle recorded (before c1e0897 the adapter
    read the RAG prompt alone). Such an adapter still serves, but its scores are of texts unlike
    the ones it is shown now."""
    pairs = (entry.get("info") or {}).get("pairs")
    if pairs == ADAPTER_PAIRS:
        return None
    trained_on = f"{pairs!r} pairs" if pairs else "pairs of an older, unrecorded format"
    return (f"the adapter was trained on {trained_on}, this version builds {ADAPTER_PAIRS!r} "
            f"pairs: its scores no longer mean what training meant; label and train it again "
            f"(docs/operations.md, \"Upgrades\")")


def _check_pairs(entry: Mapping[str, Any], version: str, uri: str) -> None:
    warning = pairs_warning(entry)
    if warning is not None:
        log.warning("base %s in %s: %s", version, uri, warning)


def read_bundle_config(registry: Registry, version: str) -> dict[str, Any]:
    """The config of bundle `version` (reads only its config file, checksum verified)."""
    entry = registry.manifest().bases.get(version)
    if entry is None:
        raise NotFoundError(f"no base {version!r} in {registry.storage.uri}")
    data = registry.storage.get(entry.config.key)
    if sha256(data) != entry.config.sha256:
        raise ArtifactError(f"base {version}: checksum mismatch for {entry.config.key!r}")
    config = json.loads(data)
    if config.get("format") != BUNDLE_FORMAT:
        raise ArtifactError(f"base {version} in {registry.storage.uri} is not a "
                            f"{BUNDLE_FORMAT} bundle, got format {config.get('format')!r}")
    return config


def bundle_head_configs(registry: Registry, version: str) -> dict[str, HeadConfig]:
    """kind -> the head form bundle `version` records for it (reads only the config file)."""
    config = read_bundle_config(registry, version)
    return {kind: ModelConfig.from_dict(entry["model"], source=f"{kind} base config").head
            for kind, entry in config.get("kinds", {}).items()}
