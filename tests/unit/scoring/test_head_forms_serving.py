"""Serving low-rank int8 heads: the bundle records the form, the scorer scores with it (same as
the formula), and a head of another form than the base's is a clear error for its user only."""

from __future__ import annotations

import asyncio

import pytest
import torch

from hydralm.artifacts import Registry
from hydralm.errors import ArtifactError
from hydralm.model import HeadBank, HeadConfig, LowRankHeadState
from hydralm.scoring import BatchScorer, PairGroup, RetryPolicy, publish_random_registry
from hydralm.scoring.bundle import bundle_head_configs, load_bundle_encoders
from hydralm.scoring.synthetic import random_heads

USERS = ["ann", "bob"]
COMPACT = HeadConfig(form="lowrank", rank=4, dtype="int8")


@pytest.fixture
def compact_registry(tmp_path, tiny_config) -> Registry:
    registry = Registry(str(tmp_path / "registry"))
    config = tiny_config.model_copy(update={"head": COMPACT})
    publish_random_registry(registry, USERS, config=config, seed=3)
    return registry


def test_the_bundle_records_the_head_form_and_heads_have_it(compact_registry):
    version = compact_registry.base_version()
    assert bundle_head_configs(compact_registry, version) == {"reranker": COMPACT,
                                                               "adapter": COMPACT}
    head = compact_registry.load_head("reranker", "ann")
    assert isinstance(head, LowRankHeadState) and head.config == COMPACT


def test_scores_of_compact_heads_equal_scoring_each_head_alone(compact_registry):
    groups = [PairGroup.of("adapter", u, ["a query", "another"], ["item one", "item two"])
              for u in (*USERS, "stranger")]
    outcomes = asyncio.run(BatchScorer(compact_registry, precision="fp32").score_groups(groups))
    encoder = load_bundle_encoders(compact_registry, ["adapter"],
                                   compact_registry.base_version())["adapter"]
    for user, outcome in zip((*USERS, "stranger"), outcomes, strict=True):
        head = (compact_registry.load_head("adapter", user) if user in USERS
                else compact_registry.load_global_head("adapter"))
        with torch.no_grad():
            x = encoder.embed(["a query", "another"], ["item one", "item two"])
            logits = HeadBank.from_states([head], dropout=0.0).eval()(x, torch.zeros(2).long())
        want = torch.softmax(logits, -1)[:, 1].tolist()
        assert outcome.scores == pytest.approx(want, abs=1e-5)
        assert outcome.head == ("global" if user == "stranger" else "user")


def test_a_head_of_another_form_than_the_bases_fails_only_its_user(compact_registry):
    dim = load_bundle_encoders(compact_registry, ["reranker"],
                               compact_registry.base_version())["reranker"].dim
    dense = random_heads(1, dim, seed=5)[0]
    compact_registry.save_head("reranker", "bob", dense, compact_registry.base_version())
    scorer = BatchScorer(compact_registry, retry=RetryPolicy(attempts=1), kinds=("reranker",))
    groups = [PairGroup.of("reranker", u, ["q"], ["i"]) for u in USERS]
    ann, bob = asyncio.run(scorer.score_groups(groups))
    assert ann.head == "user"
    assert isinstance(bob, ArtifactError)
    assert "reranker head of user 'bob'" in str(bob)
    assert "is a dense int8 head, but the base expects lowrank r=4 int8 heads" in str(bob)
