"""The zero-fit router of a job (hydralm/model/zero_fit.py): its training users' history
profiles, published with the bases so that serving can score a user who has history and no
fitted head by a mixture of the training users' heads."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from hydralm.artifacts import Registry
from hydralm.jobconfig import JobConfig
from hydralm.model.zero_fit import Router, history_profile
from hydralm.tasks import get_task
from training.bases import add_router, bundle_config
from training.users import prepare_users

__all__ = ["build_router", "ensure_router"]

log = logging.getLogger(__name__)


def build_router(cfg: JobConfig, users: Sequence[str]) -> Router | None:
    """The router over `users` (the job's training users) from their histories; None when the
    job turns zero-fit heads off (train.zero_fit_users 0)."""
    if cfg.train.zero_fit_users == 0:
        return None
    dataset, _ = prepare_users(cfg)
    task = get_task(cfg.task)
    profiles = {u: history_profile(task.item_text(item) for item in dataset.profile(u))
                for u in users}
    return Router.from_profiles(profiles, k=cfg.train.zero_fit_users)


def ensure_router(cfg: JobConfig, users: Sequence[str]) -> str | None:
    """Publish the current bases again with the router when they were published without one
    (by a version before zero-fit heads, or with zero_fit_users 0 then); returns the new base
    version, or None when nothing was needed."""
    registry = Registry(cfg.paths.registry)
    config = bundle_config(registry)
    if config is None or "zero_fit" in config or cfg.train.zero_fit_users == 0:
        return None
    router = build_router(cfg, users)
    assert router is not None
    version = add_router(registry, router)
    log.info("published the bases again with a zero-fit router over %d training users: %s",
             len(router.users), version)
    return version
