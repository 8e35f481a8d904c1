"""The base bundle: how the registry's one current base holds both HYDRA encoders.

The registry has one current base version, while the reranker and the adapter each have their own
base. A published base is therefore a bundle: one state dict with each encoder's `BaseEncoder`
weights under the prefix `<kind>.`, and the config
`{"format": "hydralm-base-bundle/1", "kinds": {kind: {"model": ModelConfig, "dim": d, ...}}}`.
The ModelConfig's `head` says which head form (and storage dtype) the kind's heads have; a bundle
written before head forms existed has none and means the dense head.
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

__all__ = ["BUNDLE_FORMAT", "bundle_head_configs", "load_bundle_encoders", "publish_bundle"]

log = logging.getLogger(__name__)

BUNDLE_FORMAT = "hydralm-base-bundle/1"


def publish_bundle(registry: Registry, encoders: Mapping[str, tuple[BaseEncoder, ModelConfig]],
                   ) -> str:
    """Publish the encoders as the registry's current base (a bundle); returns its version.

    Heads saved for an earlier base stop loading until saved again with the new version."""
    state: dict[str, Tensor] = {}
    kinds: dict[str, Any] = {}
    for kind, (encoder, config) in sorted(encoders.items()):
        state.update({f"{kind}.{k}": v for k, v in encoder.state_dict().items()})
        kinds[kind] = {"model": config.model_dump(mode="json"), "dim": encoder.dim}
    return registry.publish_base(state, {"format": BUNDLE_FORMAT, "kinds": kinds})


def load_bundle_encoders(registry: Registry, kinds: Sequence[str], version: str, *,
                         device: str | torch.device = "cpu") -> dict[str, BaseEncoder]:
    """Each kind's encoder of bundle `version`, in eval mode (the bundle is read once)."""
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
    return encoders


def bundle_head_configs(registry: Registry, version: str) -> dict[str, HeadConfig]:
    """kind -> the head form bundle `version` records for it (reads only the config file)."""
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
    return {kind: ModelConfig.from_dict(entry["model"], source=f"{kind} base config").head
            for kind, entry in config.get("kinds", {}).items()}
