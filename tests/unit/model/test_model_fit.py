"""Head fitting on cached vectors: it learns, it is deterministic, and users do not interact."""

from __future__ import annotations

import pytest
import torch

from hydralm.errors import ConfigError
from hydralm.model import HeadAdamW, HeadBank, HeadFitConfig, fit_heads_on_embeddings

D = 16


def _toy(num_users: int, rows: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Each user's classes sit on either side of its own random direction, with a margin:
    separable per user, but not by one head for everyone."""
    gen = torch.Generator().manual_seed(seed)
    directions = torch.nn.functional.normalize(torch.randn(num_users, D, generator=gen), dim=1)
    head_idx = torch.arange(num_users).repeat_interleave(rows)
    labels = torch.randint(0, 2, (num_users * rows,), generator=gen)
    x = torch.randn(num_users * rows, D, generator=gen)
    x = x + (2 * labels - 1).unsqueeze(1) * 3.0 * directions[head_idx]
    return x, head_idx, labels


def test_learns_a_separable_problem_for_every_user():
    x, head_idx, labels = _toy(num_users=6, rows=80)
    train = torch.arange(len(x)) % 80 < 60                       # 60 rows to fit, 20 held out
    bank = fit_heads_on_embeddings(x[train], head_idx[train], labels[train], 6,
                                   epochs=40, lr=1e-2, batch_size=16, seed=0)
    with torch.no_grad():
        correct = bank(x[~train], head_idx[~train]).argmax(1) == labels[~train]
    per_user = [correct[head_idx[~train] == u].float().mean().item() for u in range(6)]
    assert min(per_user) > 0.9, per_user


def test_a_users_head_does_not_depend_on_who_else_is_fitted():
    x, head_idx, labels = _toy(num_users=3, rows=20)
    # Full batches and no dropout remove the randomness; an explicit init gives both the same start.
    settings = dict(epochs=5, lr=1e-2, batch_size=20, dropout=0.0, seed=3)
    init = HeadBank(1, D, generator=torch.Generator().manual_seed(9)).extract(0)
    alone_rows = head_idx == 1
    together = fit_heads_on_embeddings(x, head_idx, labels, 3, init=init, **settings)
    alone = fit_heads_on_embeddings(x[alone_rows], torch.zeros(20, dtype=torch.long),
                                    labels[alone_rows], 1, init=init, **settings)
    for name, tensor in together.extract(1).tensors().items():
        torch.testing.assert_close(tensor, alone.extract(0).tensors()[name], rtol=1e-4, atol=1e-6)


def test_same_seed_same_heads_other_seed_other_heads():
    x, head_idx, labels = _toy(num_users=3, rows=30)
    a, b, c = (fit_heads_on_embeddings(x, head_idx, labels, 3, epochs=3, seed=s) for s in (1, 1, 2))
    assert torch.equal(a.w1, b.w1)
    assert not torch.allclose(a.w1, c.w1)


def test_fitting_leaves_the_global_rng_alone():
    x, head_idx, labels = _toy(num_users=2, rows=10)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    fit_heads_on_embeddings(x, head_idx, labels, 2, epochs=2)
    assert torch.equal(torch.rand(3), expected)


def test_heads_without_rows_keep_their_init():
    x, head_idx, labels = _toy(num_users=2, rows=10)
    init = HeadBank(1, D, generator=torch.Generator().manual_seed(5)).extract(0)
    bank = fit_heads_on_embeddings(x, head_idx, labels, 4, init=init, epochs=3)
    for name, tensor in bank.extract(3).tensors().items():
        assert torch.equal(tensor, init.tensors()[name])
    assert not torch.equal(bank.extract(0).w1, init.w1)


def test_users_with_unequal_row_counts_are_all_fitted():
    x, head_idx, labels = _toy(num_users=2, rows=40)
    keep = (head_idx == 0) | (torch.arange(80) < 45)            # user 0: 40 rows, user 1: 5
    bank = fit_heads_on_embeddings(x[keep], head_idx[keep], labels[keep], 2, epochs=30, lr=2e-2,
                                   batch_size=8)
    with torch.no_grad():
        pred = bank(x[keep], head_idx[keep]).argmax(1)
    assert (pred[head_idx[keep] == 1] == labels[keep][head_idx[keep] == 1]).all()


def test_head_adamw_matches_torch_adamw_for_one_head():
    torch.manual_seed(0)
    ours = HeadBank(1, D, dropout=0.0)
    ref = HeadBank(1, D, dropout=0.0)
    ref.load_state_dict(ours.state_dict())
    opt = HeadAdamW(ours, lr=1e-2, weight_decay=0.1)
    ref_opt = torch.optim.AdamW(ref.parameters(), lr=1e-2, weight_decay=0.1)
    x, idx = torch.randn(8, D), torch.zeros(8, dtype=torch.long)
    for _ in range(5):
        opt.zero_grad()
        ours(x, idx).square().sum().backward()
        opt.step(torch.tensor([0]))
        ref_opt.zero_grad()
        ref(x, idx).square().sum().backward()
        ref_opt.step()
    for name, tensor in ours.state_dict().items():
        torch.testing.assert_close(tensor, ref.state_dict()[name], rtol=1e-5, atol=1e-6)


def test_head_adamw_moves_only_active_heads():
    bank = HeadBank(3, D, dropout=0.0)
    before = bank.w1.detach().clone()
    opt = HeadAdamW(bank, lr=1e-2, weight_decay=0.5)
    bank(torch.randn(4, D), torch.tensor([0, 0, 2, 2])).sum().backward()
    opt.step(torch.tensor([0, 2]))
    assert torch.equal(bank.w1[1], before[1])
    assert not torch.equal(bank.w1[0], before[0]) and not torch.equal(bank.w1[2], before[2])


@pytest.mark.parametrize("overrides", [{"lr": 0.0}, {"epochs": 0}, {"batch_size": 0},
                                       {"dropout": 1.0}, {"learning_rate": 1e-3}])
def test_bad_settings_are_config_errors(overrides):
    x, head_idx, labels = _toy(num_users=1, rows=4)
    with pytest.raises(ConfigError, match="head fitting arguments"):
        fit_heads_on_embeddings(x, head_idx, labels, 1, **overrides)


def test_config_object_and_overrides_combine():
    x, head_idx, labels = _toy(num_users=2, rows=10)
    cfg = HeadFitConfig(epochs=2, seed=4)
    a = fit_heads_on_embeddings(x, head_idx, labels, 2, cfg, lr=5e-3)
    b = fit_heads_on_embeddings(x, head_idx, labels, 2, epochs=2, seed=4, lr=5e-3)
    assert torch.equal(a.w1, b.w1)


@pytest.mark.parametrize("head_idx, labels, match", [
    ([0, 1, 2], [0, 1, 1], r"\[0, 2\)"),       # head out of range
    ([0, 1, 1], [0, 2, 1], "0 or 1"),         # not a binary label
    ([0, 1], [0, 1, 1], "one head and one label per row"),
])
def test_bad_rows_are_rejected(head_idx, labels, match):
    with pytest.raises(ValueError, match=match):
        fit_heads_on_embeddings(torch.zeros(3, D), torch.tensor(head_idx), torch.tensor(labels), 2)
