"""Which users a refit run fits: their history store's versions against what their heads record.

Pure (no Ray): one pass over `HistoryStore.iter_versions()` (paged, so millions of users stream)
beside each model's head entries. For each model a user is

- **unchanged** when their head is on the current base and records the store's version;
- **changed** when their head records another version (or sits on an older base): refit;
- **new** when they have no head and at least `min_items` items: fitted for the first time;
- **below_min** when they have no head and fewer items;
- **from_dataset** / **dataset_changed** when their head records no version: it was made by
  `hydralm train` or `fit-users` from the job's dataset, so it is refit only when the store's
  items differ from the user's profile in that dataset (`baseline`).

The version recorded for a refit user is the one read here, BEFORE their items are read for the
labels: if an append lands in between, the head is fitted on newer items than it records, and the
next run refits it again; never the other way round.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["HeadRecord", "KindPlan", "plan_refit"]

# user id -> the item ids of their profile in the job's dataset (None: not in it).
Baseline = Callable[[str], Sequence[str] | None]
# user id -> the item ids of their current history in the store.
ItemIds = Callable[[str], Sequence[str]]


class HeadRecord(Protocol):
    """What planning needs of a registry head entry (`hydralm.artifacts.manifest.HeadEntry`)."""

    base_version: str
    history_version: int | None


@dataclass
class KindPlan:
    """One model's refit: users to fit with the history version each will record, and counts."""

    kind: str
    base_version: str
    pending: dict[str, int] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("users", "unchanged", "changed", "new", "below_min", "from_dataset", "dataset_changed",
         "deferred"), 0))

    def summary(self) -> dict[str, object]:
        return {"model": self.kind, "base_version": self.base_version,
                "pending": len(self.pending), **self.counts}


class _UserItems:
    """One user's item ids, read from the store at most once, and only if asked for."""

    def __init__(self, user: str, item_ids: ItemIds) -> None:
        self.user, self._read = user, item_ids
        self._ids: Sequence[str] | None = None

    def ids(self) -> Sequence[str]:
        if self._ids is None:
            self._ids = self._read(self.user)
        return self._ids


def _reason(head: HeadRecord | None, version: int, base_version: str, items: _UserItems,
            min_items: int, baseline: Baseline) -> str:
    if head is None or head.base_version != base_version:
        if len(items.ids()) < min_items:
            return "below_min"
        return "new" if head is None else "changed"
    if head.history_version is not None:
        return "unchanged" if head.history_version == version else "changed"
    known = baseline(items.user)
    if known is not None and list(known) == list(items.ids()):
        return "from_dataset"
    return "dataset_changed"


def plan_refit(versions: Iterable[tuple[str, int]], heads: Mapping[str, Mapping[str, HeadRecord]],
               base_version: str, *, item_ids: ItemIds, baseline: Baseline, min_items: int,
               max_users: int | None = None) -> list[KindPlan]:
    """One plan per model in `heads` (kind -> user -> head entry), from the store's `versions`
    ((user, version) in user-id order). `item_ids` is read at most once per user, and only for
    users without a usable head or whose head records no version."""
    plans = [KindPlan(kind, base_version) for kind in heads]
    for user, version in versions:
        items = _UserItems(user, item_ids)
        for plan in plans:
            plan.counts["users"] += 1
            reason = _reason(heads[plan.kind].get(user), version, base_version, items,
                             min_items, baseline)
            if reason in ("changed", "new", "dataset_changed"):
                if max_users is not None and len(plan.pending) >= max_users:
                    reason = "deferred"
                else:
                    plan.pending[user] = version
            plan.counts[reason] += 1
    return plans
