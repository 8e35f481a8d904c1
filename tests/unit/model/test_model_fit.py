"""Head fitting on cached vectors: it learns, it is deterministic, users do not interact, and the
batched loop (hand-written gradients, fused AdamW per chunk of heads) matches autograd + AdamW."""

from __future__ import annotations

import pytest
import torch

import hydralm.model.fit as fit_module
from hydralm.errors import ConfigError
from hydralm.model import HeadBank, HeadConfig, HeadFitConfig, fit_heads_on_embeddings

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


def _reference_fit(x, labels, init, epochs, lr, weight_decay):
    """One head, full batches, no dropout: autograd and torch's own AdamW, step by step."""
    bank = HeadBank.from_states([init], dropout=0.0)
    opt = torch.optim.AdamW(bank.parameters(), lr=lr, weight_decay=weight_decay)
    idx = torch.zeros(len(x), dtype=torch.long)
    for _ in range(epochs):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(bank(x, idx), labels).backward()
        opt.step()
    return bank.extract(0)


@pytest.mark.parametrize("head", [HeadConfig(), HeadConfig(form="lowrank", rank=4)],
                         ids=["dense", "lowrank"])
def test_batched_fit_matches_autograd_and_torch_adamw(head):
    x, head_idx, labels = _toy(num_users=1, rows=12)
    init = HeadBank(1, D, head=head, generator=torch.Generator().manual_seed(2)).extract(0)
    ours = fit_heads_on_embeddings(x, head_idx, labels, 1, init=init, epochs=6, lr=1e-2,
                                   weight_decay=0.1, batch_size=12, dropout=0.0).extract(0)
    ref = _reference_fit(x, labels, init, epochs=6, lr=1e-2, weight_decay=0.1)
    for name, tensor in ours.tensors().items():
        torch.testing.assert_close(tensor, ref.tensors()[name], rtol=1e-4, atol=1e-6)


def test_a_head_out_of_rows_stays_put_while_others_step(monkeypatch):
    """User 0 has 5 rows (1 step per epoch at batch 8), user 1 has 40 (5 steps): user 0's head
    must not decay or carry momentum through user 1's extra steps, also across chunks."""
    monkeypatch.setattr(fit_module, "_CHUNK_HEADS", 1)
    x, head_idx, labels = _toy(num_users=2, rows=40)
    keep = (head_idx == 1) | (torch.arange(80) < 5)
    settings = dict(epochs=3, lr=1e-2, batch_size=8, dropout=0.0, seed=1, weight_decay=0.5)
    init = HeadBank(1, D, generator=torch.Generator().manual_seed(4)).extract(0)
    together = fit_heads_on_embeddings(x[keep], head_idx[keep], labels[keep], 2, init=init,
                                       **settings)
    alone = fit_heads_on_embeddings(x[:5], torch.zeros(5, dtype=torch.long), labels[:5], 1,
                                    init=init, **settings)
    for name, tensor in together.extract(0).tensors().items():
        torch.testing.assert_close(tensor, alone.extract(0).tensors()[name], rtol=1e-5, atol=1e-7)


def test_chunks_as_views_or_copies_give_the_same_heads(monkeypatch):
    """Users 0 and 2 (12 rows: 3 steps at batch 4) share a chunk that is not a range of the bank
    (a copy, written back at the end); user 1 (3 rows) is a range (a view)."""
    x, head_idx, labels = _toy(num_users=3, rows=12)
    keep = (head_idx != 1) | (torch.arange(36) < 15)
    args = (x[keep], head_idx[keep], labels[keep], 3)
    settings = dict(epochs=2, lr=1e-2, batch_size=4, seed=5)
    init = HeadBank(1, D, generator=torch.Generator().manual_seed(6)).extract(0)
    mixed = fit_heads_on_embeddings(*args, init=init, **settings)
    monkeypatch.setattr(fit_module, "_chunk_tensor", lambda stacked, heads: stacked.detach()[heads])
    copied = fit_heads_on_embeddings(*args, init=init, **settings)
    for name in mixed.names:
        assert torch.equal(getattr(mixed, name), getattr(copied, name))
    for user in range(3):
        assert not torch.equal(mixed.extract(user).w1, init.w1)


def test_init_and_head_form_must_agree():
    x, head_idx, labels = _toy(num_users=1, rows=4)
    init = HeadBank(1, D).extract(0)
    with pytest.raises(ValueError, match="lowrank"):
        fit_heads_on_embeddings(x, head_idx, labels, 1, init=init,
                                head=HeadConfig(form="lowrank", rank=2))


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


def test_chunk_size_does_not_change_the_heads(monkeypatch):
    """Without randomness (full batches, no dropout) heads fitted one chunk each, reusing one
    workspace in turn, equal heads fitted in one stacked chunk."""
    x, head_idx, labels = _toy(num_users=5, rows=12)
    settings = dict(epochs=4, lr=1e-2, batch_size=12, dropout=0.0, seed=2, weight_decay=0.2)
    init = HeadBank(1, D, generator=torch.Generator().manual_seed(8)).extract(0)
    together = fit_heads_on_embeddings(x, head_idx, labels, 5, init=init, **settings)
    monkeypatch.setattr(fit_module, "_CHUNK_HEADS", 1)
    apart = fit_heads_on_embeddings(x, head_idx, labels, 5, init=init, **settings)
    for name in together.names:
        torch.testing.assert_close(getattr(apart, name), getattr(together, name), rtol=1e-5,
                                   atol=1e-7)
