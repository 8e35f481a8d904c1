"""A bucket's head fitting without Ray: one head per user with rows, banks of bounded size that
give the same heads as one bank, and heads that learn their own user's labels."""

from __future__ import annotations

import numpy as np
import torch

from hydralm.jobconfig import FitConfig
from hydralm.model import HeadBank, HydraModel
from training.fit_heads import embeddings_table, fit_user_heads, head_fit_config


def _table(users: list[str], rows_per_user: int, dim: int = 8, seed: int = 0):
    """User u's label is 1 exactly when the vector's first (a) or second (b) coordinate is
    positive: opposite rules, learnable per user."""
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(len(users) * rows_per_user, dim)).astype(np.float32)
    ids = [u for u in users for _ in range(rows_per_user)]
    labels = [int(v[0] > 0) if u.endswith("a") else int(v[1] > 0) for u, v in zip(ids, vectors,
                                                                                    strict=True)]
    return embeddings_table(ids, labels, vectors), vectors, labels


def test_each_user_with_rows_gets_a_head_that_learns_its_rule():
    table, vectors, labels = _table(["user-a", "user-b"], 64)
    config = head_fit_config(FitConfig(epochs=30, lr=1e-2, batch_size=16), dropout=0.0)
    heads = fit_user_heads(table, ["user-a", "user-b", "no-rows"], config, max_users_per_fit=8,
                           init=None)
    assert set(heads) == {"user-a", "user-b"}
    bank = HeadBank.from_states([heads["user-a"], heads["user-b"]], dropout=0.0).eval()
    x = torch.from_numpy(vectors)
    idx = torch.tensor([0] * 64 + [1] * 64)
    predicted = bank(x, idx).argmax(dim=1)
    accuracy = (predicted == torch.tensor(labels)).float().mean().item()
    assert accuracy > 0.85, accuracy


def test_bounded_banks_give_the_heads_of_one_bank():
    users = [f"u{i}-a" for i in range(5)]
    table, _, _ = _table(users, 10, seed=1)
    config = head_fit_config(FitConfig(epochs=3, seed=4), dropout=0.0)
    init = HeadBank(1, 8, generator=torch.Generator().manual_seed(0)).extract(0)
    together = fit_user_heads(table, users, config, max_users_per_fit=100, init=init)
    in_pairs = fit_user_heads(table, users, config, max_users_per_fit=2, init=init)
    for user in users:
        assert torch.allclose(together[user].w1, in_pairs[user].w1, atol=1e-5)


def test_heads_plug_into_the_model_used_for_serving(tiny_encoder):
    from hydralm.model import BaseEncoder

    table, _, _ = _table(["x-a"], 8, dim=32)
    heads = fit_user_heads(table, ["x-a"], head_fit_config(FitConfig(epochs=1), 0.0),
                           max_users_per_fit=4, init=None)
    model = HydraModel(BaseEncoder(tiny_encoder, max_length=16),
                       HeadBank.from_states([heads["x-a"]], dropout=0.0))
    scores = model.score(["a query"], ["an item"], [0])
    assert scores.shape == (1,) and 0.0 <= float(scores[0]) <= 1.0
