"""`train.zero_fit_users: auto`: after training, each kind's zero-fit k is chosen on the training
users (leave one out over their own label pairs) and published with the bases; a fixed k is
published as it is, and a choice already made is not redone."""

from __future__ import annotations

import torch
from training_fixtures import build_tiny_encoder, tiny_job, write_fake_labels

from hydralm.artifacts import Registry
from hydralm.model import BaseEncoder, HeadBank
from hydralm.model.zero_fit import Router
from hydralm.scoring.bundle import load_bundle
from training.bases import TrainedModel, add_router, publish_models
from training.routing import K_RULE, build_router, ensure_router
from training.users import prepare_users


def _publish(cfg, users) -> Registry:
    registry = Registry(cfg.paths.registry)
    models = []
    for seed, kind in enumerate(("reranker", "adapter")):
        encoder = BaseEncoder.from_config(cfg.model(kind))
        bank = HeadBank(len(users) + 1, encoder.dim,
                        generator=torch.Generator().manual_seed(seed))
        models.append(TrainedModel(kind, encoder.state_dict(), cfg.model(kind),
                                   {u: bank.extract(i) for i, u in enumerate(users)},
                                   bank.extract(len(users)), {"run": kind}))
    publish_models(registry, models, build_router(cfg, users))
    return registry


def test_auto_chooses_each_kinds_k_on_the_training_users_and_publishes_it(tmp_path):
    cfg = tiny_job(tmp_path / "job", build_tiny_encoder(tmp_path / "encoder"))
    write_fake_labels(cfg, rows_per_query=4)     # 3 queries of 4 rows per user
    _, split = prepare_users(cfg)
    registry = _publish(cfg, split.train)
    before = registry.base_version()
    assert load_bundle(registry, ["adapter"], before)[1].choice is None

    version = ensure_router(cfg, split.train)
    assert version is not None and version != before
    _, router = load_bundle(registry, ["adapter"], version)
    choice = router.choice
    assert set(choice["k_by_kind"]) == {"reranker", "adapter"}
    for kind, by_k in choice["accuracy_by_k"].items():
        # 6 training users: one left out, at most 5 to mix (all 5 tried too)
        assert set(by_k) == {"1", "2", "4", "5"} and all(0.0 <= v <= 1.0 for v in by_k.values())
        best = max(by_k.values())
        # the best mean, or the default k when the best does not beat it clearly (pick_k)
        assert by_k[str(choice["k_by_kind"][kind])] == best or choice["k_by_kind"][kind] == 4
        assert router.k_for(kind) == choice["k_by_kind"][kind]
        assert choice["rows"][kind] > 0
    assert registry.list_users("adapter") == sorted(split.train)   # heads carried over
    assert ensure_router(cfg, split.train) is None                 # chosen already
    assert choice["rule"] == K_RULE


def test_a_choice_made_by_another_rule_is_made_again(tmp_path):
    cfg = tiny_job(tmp_path / "job", build_tiny_encoder(tmp_path / "encoder"))
    write_fake_labels(cfg, rows_per_query=4)
    _, split = prepare_users(cfg)
    registry = _publish(cfg, split.train)
    ensure_router(cfg, split.train)
    _, router = load_bundle(registry, ["adapter"], registry.base_version())
    older = {k: v for k, v in router.choice.items() if k != "rule"}   # an older version's choice
    add_router(registry, Router(router.users, router.vectors, router.idf, router.k,
                                router.k_by_kind, older))
    before = registry.base_version()
    assert ensure_router(cfg, split.train) not in (None, before)
    _, router = load_bundle(registry, ["adapter"], registry.base_version())
    assert router.choice["rule"] == K_RULE


def test_a_fixed_k_is_published_as_it_is(tmp_path):
    cfg = tiny_job(tmp_path / "job", build_tiny_encoder(tmp_path / "encoder"),
                   train={"zero_fit_users": 3})
    _, split = prepare_users(cfg)
    registry = _publish(cfg, split.train)
    assert ensure_router(cfg, split.train) is None
    _, router = load_bundle(registry, ["adapter"], registry.base_version())
    assert router.k == 3 and router.choice is None and router.k_for("adapter") == 3
