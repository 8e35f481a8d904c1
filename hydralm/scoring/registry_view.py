"""What the scorer reads from a `Registry`: the manifest version, a per-kind snapshot to tell which
heads changed, the bundled encoders, and heads checked against the base the scorer holds.

A snapshot is the kind's shard table (the sha256 of each index shard), not a list of users: on a
manifest change a replica reads one table per kind (its size is fixed by the shard count) and
drops the cached users of the shards whose file changed, never data proportional to all users."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from hydralm.artifacts import Registry, shard_of
from hydralm.errors import ArtifactError, NotFoundError, StaleHeadError
from hydralm.model import (
    AnyHeadState,
    BaseEncoder,
    HeadConfig,
    HeadState,
    ResidualHeadState,
    check_head_config,
    shared_digest,
)
from hydralm.model.zero_fit import Router
from hydralm.scoring.bundle import bundle_head_configs, load_bundle

__all__ = ["ChangedUsers", "KindSnapshot", "RegistryView", "StaleBaseError"]


class StaleBaseError(ArtifactError):
    """The registry moved to another base than the one being served: refresh, then try again."""


@dataclass(frozen=True)
class ChangedUsers:
    """The users of the index shards whose file changed: a membership test (`user in changed`),
    so a replica checks the users it caches instead of listing every user of the registry."""

    shards: frozenset[int]
    count: int

    def __contains__(self, user_id: object) -> bool:
        return isinstance(user_id, str) and shard_of(user_id, self.count) in self.shards

    def __bool__(self) -> bool:
        return bool(self.shards)


@dataclass(frozen=True)
class KindSnapshot:
    """One kind's heads as a manifest version lists them: the sha256 of each index shard."""

    kind: str
    base_version: str
    shards: tuple[str, ...] = ()
    global_sha256: str | None = None

    def changed_users(self, old: KindSnapshot) -> ChangedUsers:
        """Users whose head may have been added, replaced or removed since `old` (those of the
        shards whose file changed; every user when the shard count differs)."""
        if len(self.shards) != len(old.shards):
            return ChangedUsers(frozenset(range(max(len(self.shards), 1))), max(len(self.shards), 1))
        changed = (i for i, (a, b) in enumerate(zip(self.shards, old.shards, strict=True)) if a != b)
        return ChangedUsers(frozenset(changed), len(self.shards))

    def global_changed(self, old: KindSnapshot) -> bool:
        return self.global_sha256 != old.global_sha256


class RegistryView:
    """A `Registry` as the scorer uses it. Thread-safe like the Registry (loads run in threads)."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        # (base version, kind) -> the head form that base records: every head loaded is checked
        self._head_forms: dict[tuple[str, str], HeadConfig] = {}
        # (base version, kind) -> (sha256, w1) of a residual kind's global head: the shared
        # first layer its users' heads must name; attached to each, refreshed on a mismatch
        self._shared: dict[tuple[str, str], tuple[str, torch.Tensor]] = {}

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
            global_entry = manifest.global_heads.get(kind)
            out[kind] = KindSnapshot(kind, manifest.base_version,
                                     self.registry.index.table(kind, manifest),
                                     global_entry.sha256 if global_entry else None)
        return out

    def load_encoders(self, kinds: Sequence[str], base_version: str,
                      device: str | torch.device) -> tuple[dict[str, BaseEncoder], Router | None]:
        """The kinds' encoders of the base, and its zero-fit router (None when it has none)."""
        encoders, router = load_bundle(self.registry, kinds, base_version, device=device)
        forms = bundle_head_configs(self.registry, base_version)
        self._head_forms = {(base_version, kind): forms[kind] for kind in kinds}
        return encoders, router

    def _check_current(self, base_version: str, what: str) -> None:
        current = self.registry.base_version()
        if current != base_version:
            raise StaleBaseError(f"{what}: the registry's base is now {current!r}, the scorer "
                                 f"serves {base_version!r}")

    def _check_form(self, head: AnyHeadState, kind: str, base_version: str,
                    what: str, global_head: bool = False) -> AnyHeadState:
        """ArtifactError when the head's form is not the one the served base records (a residual
        kind's global head is dense: its w1 is the users' shared first layer)."""
        expected = self._head_forms.get((base_version, kind))
        if expected is None:
            found = bundle_head_configs(self.registry, base_version).get(kind)
            if found is None:
                raise NotFoundError(f"base {base_version} has no {kind} encoder")
            expected = self._head_forms.setdefault((base_version, kind), found)
        if global_head and expected.form == "residual":
            expected = HeadConfig(form="dense")
        return check_head_config(head, expected, f"{what} in {self.registry.storage.uri}")

    def load_head(self, kind: str, user_id: str, base_version: str) -> AnyHeadState:
        """The user's head, verified by the registry (checksum, identity, current base),
        belonging to `base_version` and of the form that base records; NotFoundError when the
        user has none."""
        what = f"{kind} head of user {user_id!r}"
        self._check_current(base_version, what)
        head = self._check_form(self.registry.load_head(kind, user_id), kind, base_version, what)
        if isinstance(head, ResidualHeadState):
            head = self._with_shared(head, kind, base_version, what)
        return head

    def load_global_head(self, kind: str, base_version: str) -> AnyHeadState:
        what = f"global {kind} head"
        self._check_current(base_version, what)
        head = self._check_form(self.registry.load_global_head(kind), kind, base_version, what,
                                global_head=True)
        if self._head_forms.get((base_version, kind), HeadConfig()).form == "residual":
            assert isinstance(head, HeadState)    # checked dense above
            self._shared[(base_version, kind)] = (shared_digest(head.w1), head.w1)
        return head

    def _with_shared(self, head: ResidualHeadState, kind: str, base_version: str,
                     what: str) -> ResidualHeadState:
        """`head` carrying the global head's w1 when that is the layer it names; else a
        StaleHeadError (a NotFoundError: the user is served by the global head until refitted),
        as for a head of another base."""
        known = self._shared.get((base_version, kind))
        if known is None or known[0] != head.shared:      # first use, or the global head moved
            self.load_global_head(kind, base_version)
            known = self._shared[(base_version, kind)]
        if known[0] != head.shared:
            raise StaleHeadError(f"{what} in {self.registry.storage.uri} was fitted on the "
                                 f"shared first layer {head.shared[:12]}, but the global "
                                 f"{kind} head's w1 is {known[0][:12]}; refit it")
        return head.with_layer(known[1], known[0])
