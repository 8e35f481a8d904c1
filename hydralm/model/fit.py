"""Fitting per-user heads with the base frozen: every user's head trained at once, as if alone.

All users advance in lockstep: at each step every user with rows left contributes its next
mini-batch of its own rows, the loss is the sum of the per-user mean losses, and `HeadAdamW` moves
only the heads that had rows (each with its own step count). Heads do not share parameters, so a
user's head follows the same trajectory it would fitting alone (up to the random order of its rows).

Two ways to feed the heads (`fit_heads_on_embeddings` and `fit_heads_reencode`) share one loop:
- cached: the frozen base embeds every pair once; epochs reuse the vectors. This is what makes
  fitting thousands of users cheap: the cost is one encoder pass per pair, not one per epoch.
- re-encode: the frozen base re-embeds each step's pairs, as the paper's code does. With the base in
  eval mode the vectors are the same, so both give the same heads for the same seed; it exists as
  the benchmark baseline.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from hydralm.config import StrictModel
from hydralm.model.heads import HeadBank, HeadState

if TYPE_CHECKING:
    from hydralm.model.encoder import BaseEncoder

__all__ = ["HeadAdamW", "HeadFitConfig", "fit_heads_on_embeddings", "fit_heads_reencode"]

log = logging.getLogger(__name__)


class HeadFitConfig(StrictModel):
    """How per-user heads are fitted on a frozen base."""

    epochs: int = Field(default=10, ge=1, le=10_000, description="Passes over each user's rows.")
    lr: float = Field(default=1e-3, gt=0.0, le=1.0, description="AdamW learning rate.")
    batch_size: int = Field(default=16, ge=1, le=65_536,
                            description="Rows per user per step (each user's own mini-batch).")
    weight_decay: float = Field(default=0.01, ge=0.0, le=1.0,
                                description="Decoupled (AdamW) weight decay.")
    dropout: float = Field(default=0.1, ge=0.0, lt=1.0, description="Head dropout while fitting.")
    seed: int = Field(default=0, ge=0, description="Seeds the head init, row order and dropout.")


class HeadAdamW:
    """AdamW over a HeadBank where each head has its own step count and only active heads move.

    Same update as torch.optim.AdamW (decoupled decay, bias correction, eps outside the sqrt), but a
    head without rows in a step is left exactly as it is: no decay, no stale momentum.
    """

    def __init__(self, bank: HeadBank, *, lr: float, weight_decay: float,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        self.params = [bank.w1, bank.b1, bank.w2, bank.b2]
        self.lr, self.weight_decay, self.betas, self.eps = lr, weight_decay, betas, eps
        self.steps = torch.zeros(bank.num_heads)                     # [U]
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self, active: Tensor) -> None:
        """Update the heads in `active` (1-D long, distinct) from their gradients."""
        beta1, beta2 = self.betas
        self.steps[active] += 1
        t = self.steps[active]                                       # [A]
        step_size = self.lr / (1 - beta1 ** t)                       # [A]
        bc2_sqrt = torch.sqrt(1 - beta2 ** t)                        # [A]
        for p, m, v in zip(self.params, self.m, self.v, strict=True):
            shape = (-1,) + (1,) * (p.dim() - 1)                     # broadcast [A] over a head
            g = p.grad[active]
            m_a = m[active].mul_(beta1).add_(g, alpha=1 - beta1)
            v_a = v[active].mul_(beta2).addcmul_(g, g, value=1 - beta2)
            m[active], v[active] = m_a, v_a
            denom = v_a.sqrt() / bc2_sqrt.view(shape) + self.eps
            p_a = p[active] * (1 - self.lr * self.weight_decay)
            p[active] = p_a - step_size.view(shape) * m_a / denom


def _resolve(config: HeadFitConfig | None, overrides: dict[str, Any]) -> HeadFitConfig:
    base = (config or HeadFitConfig()).model_dump()
    return HeadFitConfig.from_dict({**base, **overrides}, source="head fitting arguments")


def _check_rows(n: int, head_idx: Tensor, labels: Tensor, num_heads: int) -> None:
    if head_idx.shape != (n,) or labels.shape != (n,):
        raise ValueError(f"need one head and one label per row: {n} rows, head_idx "
                         f"{tuple(head_idx.shape)}, labels {tuple(labels.shape)}")
    if n and not (0 <= int(head_idx.min()) and int(head_idx.max()) < num_heads):
        raise ValueError(f"head_idx must lie in [0, {num_heads}), got values from "
                         f"{int(head_idx.min())} to {int(head_idx.max())}")
    bad = labels[(labels != 0) & (labels != 1)]
    if bad.numel():
        raise ValueError(f"labels must be 0 or 1, got {bad[0].item()!r}")


def _epoch_plan(head_idx: Tensor, batch_size: int, gen: torch.Generator) -> list[Tensor]:
    """Row ids per step: step s holds each user's s-th mini-batch of a fresh shuffle of its rows."""
    n = head_idx.numel()
    if n == 0:
        return []
    shuffled = torch.randperm(n, generator=gen)                               # [N] random order
    order = shuffled[torch.argsort(head_idx[shuffled], stable=True)]          # grouped by head
    counts = torch.bincount(head_idx[order])
    starts = torch.cumsum(counts, 0) - counts
    position = torch.arange(n) - starts[head_idx[order]]                      # rank within user
    step = position // batch_size
    by_step = order[torch.argsort(step, stable=True)]                         # still by head
    return list(torch.split(by_step, torch.bincount(step).tolist()))


def _fit(features: Callable[[Tensor], Tensor], n: int, dim: int, head_idx: Tensor, labels: Tensor,
         num_heads: int, cfg: HeadFitConfig, init: HeadState | None) -> HeadBank:
    """The shared loop: `features(rows)` gives the [len(rows), d] inputs of those rows."""
    head_idx, labels = head_idx.long().cpu(), labels.long().cpu()
    _check_rows(n, head_idx, labels, num_heads)
    gen = torch.Generator().manual_seed(cfg.seed)
    bank = HeadBank(num_heads, dim, dropout=cfg.dropout, generator=gen)
    if init is not None:
        for i in range(num_heads):
            bank.load(i, init)
    opt = HeadAdamW(bank, lr=cfg.lr, weight_decay=cfg.weight_decay)
    rows_per_head = torch.bincount(head_idx, minlength=num_heads)             # [U]
    bank.train()
    with torch.random.fork_rng(devices=[]):   # dropout draws from the global RNG: seed it, locally
        torch.manual_seed(cfg.seed)
        for epoch in range(cfg.epochs):
            total = 0.0
            for step, rows in enumerate(_epoch_plan(head_idx, cfg.batch_size, gen)):
                heads = head_idx[rows]                                        # [R]
                per_row = F.cross_entropy(bank(features(rows), heads), labels[rows],
                                          reduction="none")                   # [R]
                in_batch = (rows_per_head[heads] - step * cfg.batch_size).clamp(max=cfg.batch_size)
                loss = (per_row / in_batch).sum()     # sum over users of each user's mean loss
                opt.zero_grad()
                loss.backward()
                opt.step(torch.unique(heads))
                total += float(loss.detach())
            log.debug("head fitting epoch %d/%d: summed user loss %.4f", epoch + 1, cfg.epochs,
                      total)
    bank.eval()
    return bank


def fit_heads_on_embeddings(embeddings: Tensor, head_idx: Tensor, labels: Tensor, num_heads: int,
                            config: HeadFitConfig | None = None, *, init: HeadState | None = None,
                            **overrides: Any) -> HeadBank:
    """Fit `num_heads` heads on precomputed base vectors embeddings [N, d] (the cached path).

    Row i belongs to head head_idx[i] with label labels[i] (0/1). Settings come from `config`,
    then keyword `overrides` (epochs=..., lr=..., batch_size=..., weight_decay=..., dropout=...,
    seed=...). `init` starts every head from one state (e.g. the global head) instead of random.
    Heads without rows keep their initial values. Deterministic for a given seed.
    """
    cfg = _resolve(config, overrides)
    if embeddings.dim() != 2:
        raise ValueError(f"embeddings must be [N, d], got shape {tuple(embeddings.shape)}")
    x = embeddings.detach().float().cpu()
    return _fit(lambda rows: x[rows], x.shape[0], x.shape[1], head_idx, labels, num_heads, cfg,
                init)


def fit_heads_reencode(base: BaseEncoder, firsts: Sequence[str], seconds: Sequence[str],
                       head_idx: Tensor, labels: Tensor, num_heads: int,
                       config: HeadFitConfig | None = None, *, init: HeadState | None = None,
                       encode_batch_size: int = 64, **overrides: Any) -> HeadBank:
    """Like `fit_heads_on_embeddings`, but the frozen base re-encodes each step's pairs."""
    cfg = _resolve(config, overrides)
    if len(firsts) != len(seconds):
        raise ValueError(f"firsts and seconds must have the same length, "
                         f"got {len(firsts)} and {len(seconds)}")

    def features(rows: Tensor) -> Tensor:
        ids = rows.tolist()
        vectors = base.embed([firsts[i] for i in ids], [seconds[i] for i in ids],
                             batch_size=encode_batch_size)
        return vectors.float().cpu()

    return _fit(features, len(firsts), base.dim, head_idx, labels, num_heads, cfg, init)
