"""HydraModel on the real MiniLM: one base pass for many users, training steps, head fitting."""

from __future__ import annotations

import pytest
import torch

from hydralm.model import (
    BaseEncoder,
    HeadBank,
    HydraModel,
    fit_heads_on_embeddings,
    fit_heads_reencode,
    train_step,
)

QUERIES = ["a movie about space", "a movie about food", "a sad love story"] * 4
ITEMS = ["astronauts on mars", "a chef in paris", "two lovers apart", "robots",
         "a bakery", "a wedding", "aliens land", "street food", "a funeral",
         "a rocket launch", "a pasta recipe", "letters never sent"]


@pytest.fixture(scope="module")
def base() -> BaseEncoder:
    return BaseEncoder()


@pytest.fixture()
def model(base) -> HydraModel:
    torch.manual_seed(0)
    return HydraModel(base, HeadBank(3, base.dim, generator=torch.Generator().manual_seed(0)))


def test_score_runs_the_base_once_for_many_users(model):
    calls = {"base": 0, "transformer": 0}
    hooks = [model.base.register_forward_hook(lambda *_: calls.__setitem__("base", calls["base"] + 1)),
             model.base.model.register_forward_hook(
                 lambda *_: calls.__setitem__("transformer", calls["transformer"] + 1))]
    try:
        scores = model.score(QUERIES, ITEMS, [0, 1, 2] * 4)
    finally:
        for hook in hooks:
            hook.remove()
    assert calls == {"base": 1, "transformer": 1}
    assert scores.shape == (12,) and ((scores > 0) & (scores < 1)).all()


def test_batched_scores_equal_each_users_own_scores(model):
    head_idx = [2, 0, 1] * 4
    batched = model.score(QUERIES, ITEMS, head_idx)
    for user in range(3):
        rows = [i for i, h in enumerate(head_idx) if h == user]
        alone = model.score([QUERIES[i] for i in rows], [ITEMS[i] for i in rows], [user] * len(rows))
        torch.testing.assert_close(batched[rows], alone, rtol=1e-4, atol=1e-5)


def test_score_is_deterministic_and_leaves_training_mode(model):
    model.train()
    first = model.score(QUERIES[:3], ITEMS[:3], [0, 1, 2])
    assert model.training
    torch.testing.assert_close(model.score(QUERIES[:3], ITEMS[:3], [0, 1, 2]), first)


def test_train_steps_lower_the_loss(model):
    batch = model.collate(QUERIES[:6], ITEMS[:6], [0, 1, 2, 0, 1, 2], [1, 0, 1, 0, 1, 0])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = [train_step(model, batch, optimizer) for _ in range(6)]
    assert all(isinstance(x, float) for x in losses)
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("head_idx, labels", [([0, 1], [1, 0, 1]), ([0, 1, 2], [1]),
                                              ([[0], [1], [2]], [1, 0, 1])])
def test_collate_needs_one_head_and_label_per_pair(model, head_idx, labels):
    with pytest.raises(ValueError):
        model.collate(QUERIES[:3], ITEMS[:3], head_idx, labels)


def test_score_needs_one_head_per_pair(model):
    with pytest.raises(ValueError, match="one head per pair"):
        model.score(QUERIES[:3], ITEMS[:3], [0, 1])


def test_heads_must_match_the_encoder_width(base):
    with pytest.raises(ValueError, match="d=384, heads d=128"):
        HydraModel(base, HeadBank(2, 128))


def test_cached_and_reencoded_fitting_give_the_same_heads(base):
    head_idx = torch.tensor([0, 1, 2] * 4)
    labels = torch.tensor([1, 0, 1, 0, 1, 0, 0, 1, 1, 1, 0, 0])
    settings = dict(epochs=3, batch_size=2, lr=1e-2, dropout=0.0, seed=11)
    cached = fit_heads_on_embeddings(base.embed(QUERIES, ITEMS), head_idx, labels, 3, **settings)
    reencoded = fit_heads_reencode(base, QUERIES, ITEMS, head_idx, labels, 3, **settings)
    for name in ("w1", "b1", "w2", "b2"):
        torch.testing.assert_close(getattr(reencoded, name), getattr(cached, name),
                                   rtol=1e-4, atol=1e-5)
