"""Serving residual heads through the BatchScorer: users' heads on the global head's w1 score as
their dense equivalent, a user without a head gets the global head in the same pass, and a head
that names another shared layer is served by the global head (as a head of another base is)."""

from __future__ import annotations

import asyncio

import pytest
import torch

from hydralm.artifacts import Registry
from hydralm.model import HeadBank, HeadConfig, HeadState, ResidualHeadState
from hydralm.scoring import BatchScorer, PairGroup, publish_random_registry
from hydralm.scoring.bundle import load_bundle_encoders
from hydralm.scoring.synthetic import random_heads

USERS = ["ann", "bob"]
RESIDUAL = HeadConfig(form="residual", rank=4, dtype="int8")
FIRSTS, SECONDS = ["a query", "another"], ["item one", "item two"]


@pytest.fixture
def residual_registry(tmp_path, tiny_config) -> Registry:
    registry = Registry(str(tmp_path / "registry"))
    publish_random_registry(registry, USERS, config=tiny_config.model_copy(
        update={"head": RESIDUAL}), kinds=("adapter",), seed=3)
    return registry


def _want(registry: Registry, head: HeadState | ResidualHeadState) -> list[float]:
    encoder = load_bundle_encoders(registry, ["adapter"], registry.base_version())["adapter"]
    if isinstance(head, ResidualHeadState):
        w1 = registry.load_global_head("adapter").w1
        head = HeadState(w1 + head.a @ head.b, head.b1, head.w2, head.b2)
    with torch.no_grad():
        x = encoder.embed(FIRSTS, SECONDS)
        logits = HeadBank.from_states([head], dropout=0.0).eval()(x, torch.zeros(2).long())
    return torch.softmax(logits, -1)[:, 1].tolist()


def test_residual_heads_score_as_their_dense_equivalent_next_to_the_global_head(
        residual_registry):
    registry = residual_registry
    assert isinstance(registry.load_global_head("adapter"), HeadState)
    groups = [PairGroup.of("adapter", u, FIRSTS, SECONDS) for u in (*USERS, "stranger")]
    scorer = BatchScorer(registry, precision="fp32", kinds=("adapter",))
    outcomes = asyncio.run(scorer.score_groups(groups))
    for user, outcome in zip((*USERS, "stranger"), outcomes, strict=True):
        head = (registry.load_head("adapter", user) if user in USERS
                else registry.load_global_head("adapter"))
        assert outcome.scores == pytest.approx(_want(registry, head), abs=1e-5)
        assert outcome.head == ("global" if user == "stranger" else "user")
    assert outcomes[0].scores != pytest.approx(outcomes[2].scores, abs=1e-3)


def test_a_head_on_another_shared_layer_is_served_by_the_global_head(residual_registry):
    registry, version = residual_registry, residual_registry.base_version()
    dim = registry.load_global_head("adapter").dim
    other = random_heads(1, dim, seed=9, head=RESIDUAL,
                         shared=HeadBank.fresh_shared(dim, torch.Generator().manual_seed(9)))[0]
    registry.save_head("adapter", "bob", other, version)
    scorer = BatchScorer(registry, precision="fp32", kinds=("adapter",))
    groups = [PairGroup.of("adapter", u, FIRSTS, SECONDS) for u in USERS]
    ann, bob = asyncio.run(scorer.score_groups(groups))
    assert ann.head == "user" and bob.head == "global"
    assert bob.scores == pytest.approx(_want(registry, registry.load_global_head("adapter")),
                                       abs=1e-5)
