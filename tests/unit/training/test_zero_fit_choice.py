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
    """Random heads of the job's form for `users` and a global head (the last), published."""
    registry = Registry(cfg.paths.registry)
    models = []
    for seed, kind in enumerate(("reranker", "adapter")):
        encoder = BaseEncoder.from_config(cfg.model(kind))
        head = cfg.model(kind).head
        generator = torch.Generator().manual_seed(seed)
        shared = (HeadBank.fresh_shared(encoder.dim, generator) if head.form == "residual"
                  else None)
        bank = HeadBank(len(users) + 1, encoder.dim, generator=generator, head=head,
                        shared=shared)
        if shared is not None:       # users' factors away from 0; the global head at the layer
            with torch.no_grad():
                bank.b.normal_(generator=generator)
                bank.b[len(users)] = 0.0
        models.append(TrainedModel(kind, encoder.state_dict(), cfg.model(kind),
                                   {u: bank.extract(i) for i, u in enumerate(users)},
                                   bank.extract_dense(len(users)), {"run": kind}))
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


def test_residual_heads_get_their_k_chosen_too(tmp_path):
    # the training users' residual heads are scored on the global head's w1, the layer they name
    residual = {"head": {"form": "residual", "rank": 4}}
    cfg = tiny_job(tmp_path / "job", build_tiny_encoder(tmp_path / "encoder"),
                   reranker=residual, adapter=residual)
    write_fake_labels(cfg, rows_per_query=4)
    _, split = prepare_users(cfg)
    registry = _publish(cfg, split.train)
    assert type(registry.load_head("adapter", split.train[0])).__name__ == "ResidualHeadState"
    ensure_router(cfg, split.train)
    _, router = load_bundle(registry, ["adapter"], registry.base_version())
    assert set(router.choice["k_by_kind"]) == {"reranker", "adapter"}
    assert all(set(by_k) == {"1", "2", "4", "5"}
               for by_k in router.choice["accuracy_by_k"].values())


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
