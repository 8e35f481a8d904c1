"""The zero-fit router of a job (hydralm/model/zero_fit.py): its training users' history
profiles, published with the bases so that serving can score a user who has history and no
fitted head by a mixture of the training users' heads; with `train.zero_fit_users: auto`, each
model kind's k chosen on the training users (leave one out over their own label pairs)."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from hydralm.artifacts import Registry
from hydralm.errors import NotFoundError, StaleHeadError
from hydralm.jobconfig import JobConfig
from hydralm.labels.schema import labels_from_table
from hydralm.model.zero_fit import (
    DEFAULT_K,
    Profile,
    Router,
    history_profile,
    leave_one_out,
    pick_k,
)
from hydralm.scoring.bundle import load_bundle
from hydralm.scoring.forward import temporary_bank
from hydralm.scoring.registry_view import RegistryView
from hydralm.stats import SE_MARGIN
from hydralm.tasks import get_task
from training.bases import KINDS, add_router, bundle_config
from training.label_store import read_labels
from training.users import prepare_users

__all__ = ["build_router", "choose_k", "ensure_router"]

log = logging.getLogger(__name__)


def _profiles(cfg: JobConfig, users: Sequence[str]) -> dict[str, Profile]:
    dataset, _ = prepare_users(cfg)
    task = get_task(cfg.task)
    return {u: history_profile(task.item_text(item) for item in dataset.profile(u))
            for u in users}


def build_router(cfg: JobConfig, users: Sequence[str],
                 profiles: Mapping[str, Profile] | None = None) -> Router | None:
    """The router over `users` (the job's training users) from their histories (`profiles`, read
    from the job's data when not given), mixing `train.zero_fit_users` heads (auto: DEFAULT_K
    until `ensure_router` chooses); None when the job turns zero-fit heads off (0)."""
    wanted = cfg.train.zero_fit_users
    if wanted == 0:
        return None
    return Router.from_profiles(profiles if profiles is not None else _profiles(cfg, users),
                                k=DEFAULT_K if wanted == "auto" else int(wanted))


# What a published choice was made by: a choice by another rule (an older version's plain best
# mean) is made again.
K_RULE = f"best mean over k={DEFAULT_K} by more than {SE_MARGIN:g} SE of the paired gain"


@torch.inference_mode()
def choose_k(cfg: JobConfig, registry: Registry, router: Router, users: Sequence[str],
             profiles: Mapping[str, Profile]) -> dict[str, Any]:
    """Each kind's k by leave one out (hydralm/model/zero_fit.py) on the training users' label
    pairs (`profiles`: their history profiles), scored by the registry's current bases and
    training users' heads: {"k_by_kind", "accuracy_by_k" per kind, "users", "rows" per kind,
    "chosen_on"}."""
    config = bundle_config(registry) or {}
    kinds = [k for k in KINDS if k in config.get("kinds", {})]
    version = registry.base_version()
    encoders, _ = load_bundle(registry, kinds, version)
    view = RegistryView(registry)
    out: dict[str, Any] = {"k_by_kind": {}, "accuracy_by_k": {}, "rows": {},
                           "chosen_on": "training users' label pairs, leave one out",
                           "rule": K_RULE}
    for kind in kinds:
        try:
            records = labels_from_table(read_labels(cfg, kind, "train", users))
        except NotFoundError:
            continue
        have = set(registry.list_users(kind))
        kind_users = [u for u in users if u in have]
        records = [r for r in records if r.user_id in have]
        if len(kind_users) < 2 or not records:
            continue
        try:    # loaded as serving loads them: a residual head with the layer it names
            heads = [view.load_head(kind, u, version) for u in kind_users]
        except StaleHeadError as exc:        # a kind carried over without its heads' base
            log.info("zero-fit k of %s not chosen: %s", kind, exc)
            continue
        x = encoders[kind].embed([r.first for r in records], [r.second for r in records])
        bank = temporary_bank(heads, "cpu")                               # [G] heads
        g, b = len(heads), len(records)
        logits = bank(x.float().repeat(g, 1), torch.arange(g).repeat_interleave(b))
        scores = torch.softmax(logits.float(), dim=-1)[:, 1].view(g, b)  # [G, B]
        groups: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
        for row, r in enumerate(records):
            groups[r.user_id][r.query_id].append(row)
        by_user = leave_one_out(router, profiles, scores, kind_users,
                                {u: list(q.values()) for u, q in groups.items()},
                                [r.score for r in records])
        if by_user:
            out["k_by_kind"][kind] = pick_k(by_user)
            out["accuracy_by_k"][kind] = {str(k): round(sum(v.values()) / len(v), 6)
                                          for k, v in by_user.items()}
            out["rows"][kind] = b
    out["users"] = len(users)
    return out


def ensure_router(cfg: JobConfig, users: Sequence[str]) -> str | None:
    """Publish the current bases again when their router is missing (bases published by a
    version before zero-fit heads, or with zero_fit_users 0 then) or, with zero_fit_users auto,
    has no k chosen by `K_RULE` yet (`choose_k`); returns the new base version, or None when
    nothing was needed."""
    registry = Registry(cfg.paths.registry)
    config = bundle_config(registry)
    wanted = cfg.train.zero_fit_users
    if config is None or wanted == 0:
        return None
    current = config.get("zero_fit")
    if current is not None and (wanted != "auto" or (
            current.get("choice") or {}).get("rule") == K_RULE):
        return None
    profiles = _profiles(cfg, users)
    router = build_router(cfg, users, profiles)
    assert router is not None
    if wanted == "auto":
        choice = choose_k(cfg, registry, router, users, profiles)
        router = Router(router.users, router.vectors, router.idf, router.k,
                        choice["k_by_kind"], choice)
        log.info("zero-fit heads: k per kind %s chosen on %d training users (leave one out; "
                 "pairwise accuracy by k %s)", choice["k_by_kind"], len(users),
                 choice["accuracy_by_k"])
    version = add_router(registry, router)
    log.info("published the bases again with a zero-fit router over %d training users: %s",
             len(router.users), version)
    return version
