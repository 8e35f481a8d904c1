"""`hydralm fit-users --refit`: refit users' heads from what they appended to their history.

```
history store versions ─┐
registry head entries  ─┴─► plan_refit          per model: users whose history changed since
                                                their head was fitted (+ users with no head and
                                                refit.min_items items); the version to record
pending users ──► label_refit (Ray Data)         their CURRENT items from the store, labelled as
                                                a new user's: pseudo-queries only (black box)
labels ─────────► fit_labelled (fit_job.py)      the frozen base embeds each pair once; one task
                                                per user bucket fits its heads and saves them
                                                with their history versions, ONE registry update
```
Users whose history did not change are not read beyond their version, not labelled and not
saved. Serving picks the new heads up on its next registry poll (no restart).

Faults: a bucket saves all its heads or none, and a head already saved with the version a run
wants is skipped, so a run killed midway leaves a consistent registry and a re-run fits only the
users left (their labels come back from the generator's response cache).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hydralm.artifacts import Registry
from hydralm.jobconfig import JobConfig
from hydralm.pipeline.interfaces import HistoryStore
from training.fit_job import current_base, fit_labelled
from training.refit_labels import (
    RefitShard,
    label_refit,
    open_history_store,
    pending_shards,
    plan_shards,
)
from training.refit_plan import KindPlan, plan_refit
from training.rerank import RerankSpec, resolve_retrieval
from training.users import prepare_users

__all__ = ["RefitRun", "plan_refit_run", "refit_columns", "run_refit"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RefitRun:
    """What a refit run will do, decided before any generator is started."""

    plans: tuple[KindPlan, ...]
    shards: tuple[RefitShard, ...]
    reranks: dict[str, RerankSpec | None]
    plan_seconds: float

    @property
    def needs_generator(self) -> bool:
        return pending_shards(self.shards) > 0


def _item_ids(store: HistoryStore, user: str) -> list[str]:
    return [str(item.get("id")) for item in store.get(user)]


def _baseline(cfg: JobConfig):
    """user -> item ids of their profile in the job's dataset (what `train` and `fit-users`
    fitted a head without a history version on), None for a user the dataset lacks. The dataset
    is opened on first use: only heads without a history version need it."""
    opened: list = []

    def ids(user: str) -> list[str] | None:
        if not opened:
            dataset, _ = prepare_users(cfg)
            opened.extend([dataset, set(dataset.users())])
        dataset, known = opened
        return [str(i.get("id")) for i in dataset.profile(user)] if user in known else None

    return ids


def plan_refit_run(cfg: JobConfig, kinds: Sequence[str]) -> RefitRun:
    """Plan each model's refit (reads the store's versions and the registry's head entries)."""
    start = time.monotonic()
    version = current_base(cfg)
    registry = Registry(cfg.paths.registry)
    manifest = registry.manifest()
    heads = {kind: dict(registry.iter_head_entries(kind, manifest)) for kind in kinds}
    store = open_history_store(cfg.refit)
    plans = plan_refit(store.iter_versions(cfg.refit.page_size), heads, version,
                       item_ids=lambda user: _item_ids(store, user), baseline=_baseline(cfg),
                       min_items=cfg.refit.min_items, max_users=cfg.refit.max_users)
    reranks = {kind: resolve_retrieval(cfg, "fit") if kind == "adapter" and plan.pending
               else None for kind, plan in zip(kinds, plans, strict=True)}
    shards = tuple(s for plan in plans
                   for s in plan_shards(cfg, plan.kind, plan.pending, reranks[plan.kind]))
    for plan in plans:
        log.info("refit plan %s", plan.summary())
    return RefitRun(tuple(plans), shards, reranks, time.monotonic() - start)


def run_refit(cfg: JobConfig, run: RefitRun, *, base_url: str | None,
              crash_bucket: int | None = None, progress: bool = True) -> dict[str, Any]:
    """Label and fit the planned users; a summary per model. `crash_bucket` is a test hook (that
    bucket's task fails before saving, as a job killed midway)."""
    start = time.monotonic()
    labelled = label_refit(cfg, run.shards, run.reranks, base_url=base_url, progress=progress)
    label_seconds = time.monotonic() - start
    models = []
    for plan in run.plans:
        fit_start = time.monotonic()
        fitted = fit_labelled(cfg, plan.kind, plan.base_version, labelled["labels"].get(plan.kind),
                              plan.pending, crash_bucket=crash_bucket, progress=progress)
        models.append({**plan.summary(), **fitted,
                       "label_rows": labelled["labels"].get(plan.kind).num_rows
                       if plan.kind in labelled["labels"] else 0,
                       "fit_seconds": round(time.monotonic() - fit_start, 1)})
    seconds = run.plan_seconds + time.monotonic() - start
    users = sorted({u for m in models for u in m.pop("users")})
    return {"registry": cfg.paths.registry, "models": models, "users_refit": len(users),
            "refit_users": users[:100],
            "generator_calls": labelled["calls"],
            "label_shards": len(run.shards), "shards_done_before": labelled["shards_done_before"],
            "plan_seconds": round(run.plan_seconds, 2), "label_seconds": round(label_seconds, 1),
            "seconds": round(seconds, 1),
            "users_per_s": round(len(users) / seconds, 3) if seconds > 0 else 0.0}


def refit_columns() -> list[str]:
    """The table the CLI prints, one row per model."""
    return ["model", "users", "unchanged", "changed", "new", "dataset_changed", "below_min",
            "deferred", "pending", "fitted", "without_data", "label_rows", "fit_seconds"]
