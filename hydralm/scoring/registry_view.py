"""What the scorer reads from a `Registry`: the manifest version, a per-kind snapshot to tell which
heads changed, the bundled encoders, and heads checked against the base the scorer holds."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch

from hydralm.artifacts import Registry
from hydralm.errors import ArtifactError, NotFoundError
from hydralm.model import BaseEncoder, HeadState
from hydralm.scoring.bundle import load_bundle_encoders

__all__ = ["KindSnapshot", "RegistryView", "StaleBaseError"]


class StaleBaseError(ArtifactError):
    """The registry moved to another base than the one being served: refresh, then try again."""


@dataclass(frozen=True)
class KindSnapshot:
    """One kind's heads as a manifest version lists them (user id -> file sha256)."""

    kind: str
    base_version: str
    heads: Mapping[str, str] = field(default_factory=dict)
    global_sha256: str | None = None

    def changed_users(self, old: KindSnapshot) -> set[str]:
        """Users whose head was added, replaced or removed since `old`."""
        users = self.heads.keys() | old.heads.keys()
        return {u for u in users if self.heads.get(u) != old.heads.get(u)}

    def global_changed(self, old: KindSnapshot) -> bool:
        return self.global_sha256 != old.global_sha256


class RegistryView:
    """A `Registry` as the scorer uses it. Thread-safe like the Registry (loads run in threads)."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def __repr__(self) -> str:
        return f"RegistryView({self.registry!r})"

    def manifest_version(self) -> int:
        return self.registry.manifest_version()

    def snapshots(self, kinds: Sequence[str]) -> dict[str, KindSnapshot]:
        """Every kind's snapshot from ONE manifest read, so they agree on the base."""
        manifest = self.registry.manifest()
        if manifest.base_version is None:
            raise NotFoundError(f"no base has been published in {self.registry.storage.uri}: "
                                "train (or publish) one first")
        out = {}
        for kind in kinds:
            index = self.registry.head_index(kind, manifest)
            global_entry = manifest.global_heads.get(kind)
            out[kind] = KindSnapshot(kind, manifest.base_version,
                                     {user: entry.sha256 for user, entry in index.items()},
                                     global_entry.sha256 if global_entry else None)
        return out

    def load_encoders(self, kinds: Sequence[str], base_version: str,
                      device: str | torch.device) -> dict[str, BaseEncoder]:
        return load_bundle_encoders(self.registry, kinds, base_version, device=device)

    def _check_current(self, base_version: str, what: str) -> None:
        current = self.registry.base_version()
        if current != base_version:
            raise StaleBaseError(f"{what}: the registry's base is now {current!r}, the scorer "
                                 f"serves {base_version!r}")

    def load_head(self, kind: str, user_id: str, base_version: str) -> HeadState:
        """The user's head, verified by the registry (checksum, identity, current base) and
        belonging to `base_version`; NotFoundError when the user has none."""
        self._check_current(base_version, f"{kind} head of user {user_id!r}")
        return self.registry.load_head(kind, user_id)

    def load_global_head(self, kind: str, base_version: str) -> HeadState:
        self._check_current(base_version, f"global {kind} head")
        return self.registry.load_global_head(kind)
