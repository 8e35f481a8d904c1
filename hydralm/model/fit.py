"""Fitting per-user heads with the base frozen: every user's head trained at once, as if alone.

All users advance in lockstep: at each step every user with rows left contributes its next
mini-batch of its own rows, the loss is the sum of the per-user mean losses, and AdamW moves only
the heads that had rows (each with its own step count). Heads do not share parameters, so a user's
head follows the same trajectory it would fitting alone (up to the random order of its rows).

How that is made cheap (benchmarks/fit_heads.py; the profile is in docs/training.md): users are
grouped by how many steps an epoch gives them (ceil(rows / batch_size)) and cut into chunks of
`_CHUNK_HEADS` heads whose tensors are stacked [G, ...] (a view of the bank where the chunk's heads
are consecutive). At step s exactly the chunks with more than s steps are active, whole, so a step
is one padded batch [G, L, d] per active chunk: a batched matmul forward (`torch.baddbmm`), the
gradients written by hand into buffers kept across steps (no autograd graph, no fresh
[G, d, d] gradient per step), and one fused `torch.optim.AdamW` per chunk, while its tensors are
still in cache. No per-user Python, no gather or scatter of head weights: every head of a chunk has
the same step count, and a chunk without rows in a step is not stepped (no decay, no momentum).

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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from pydantic import Field
from torch import Tensor, nn

from hydralm.config import StrictModel
from hydralm.model.config import HeadConfig
from hydralm.model.heads import AnyHeadState, HeadBank

if TYPE_CHECKING:
    from hydralm.model.encoder import BaseEncoder

__all__ = ["HeadFitConfig", "fit_heads_on_embeddings", "fit_heads_reencode"]

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


@dataclass
class _Chunk:
    """Up to `_CHUNK_HEADS` heads with the same steps per epoch, fitted as one stacked batch: their
    bank indices, stacked tensors (each its own leaf, so AdamW keeps one state per chunk), gradient
    buffers written in place every step, and the AdamW that moves them."""

    heads: Tensor                       # [G] bank indices
    steps: int                          # steps per epoch of every head here
    params: dict[str, nn.Parameter]     # name -> [G, ...], in the bank's names order
    grads: dict[str, Tensor]            # name -> [G, ...], reused every step
    opt: torch.optim.Optimizer


# Heads per chunk: a chunk's tensors (weights, gradients, two AdamW moments: 4 * 590 KB per dense
# 384-d head) stay in the CPU's cache between its forward, backward and update; the loop costs
# ~0.1 ms of Python per chunk and step (docs/training.md).
_CHUNK_HEADS = 32


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


def _initial_bank(num_heads: int, dim: int, cfg: HeadFitConfig, init: AnyHeadState | None,
                  head: HeadConfig | None, gen: torch.Generator) -> HeadBank:
    """Every head a copy of `init` (no random draw to overwrite), or random of form `head`."""
    if init is None:
        return HeadBank(num_heads, dim, dropout=cfg.dropout, head=head, generator=gen)
    if head is not None and head.shape_key != init.config.shape_key:
        raise ValueError(f"init is a {init.config.describe()} head, but head asks for "
                         f"{head.describe()} heads")
    if init.dim != dim:
        raise ValueError(f"init has d={init.dim}, the rows have d={dim}")
    return HeadBank.from_states([init] * num_heads, dropout=cfg.dropout)


def _chunk_tensor(stacked: Tensor, heads: Tensor) -> Tensor:
    """The rows `heads` of a bank tensor: a view when they are consecutive (updates then land in
    the bank itself), else a copy (written back by `_write_back`)."""
    first = int(heads[0])
    if int(heads[-1]) - first + 1 == heads.numel():                           # sorted, so a range
        return stacked.detach()[first:first + heads.numel()]
    return stacked.detach()[heads]


def _chunks(bank: HeadBank, rows_per_head: Tensor, cfg: HeadFitConfig) -> list[_Chunk]:
    """The heads with rows, by steps per epoch (most first), in chunks of the bank's tensors."""
    steps = (rows_per_head + cfg.batch_size - 1) // cfg.batch_size            # [U]
    chunks = []
    for count in sorted(set(steps.tolist()) - {0}, reverse=True):
        for heads in torch.nonzero(steps == count).flatten().split(_CHUNK_HEADS):  # [G]
            params = {name: nn.Parameter(_chunk_tensor(getattr(bank, name), heads))
                      for name in bank.names}
            grads = {name: torch.empty_like(p) for name, p in params.items()}
            opt = torch.optim.AdamW(params.values(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                                    fused=True)
            chunks.append(_Chunk(heads, int(count), params, grads, opt))
    return chunks


def _epoch_plan(head_idx: Tensor, num_heads: int, width: int, gen: torch.Generator) -> Tensor:
    """Row ids [U, width] of one epoch: row u holds head u's rows in a fresh random order, then -1
    (padding); step s of the epoch takes columns [s * batch_size, (s + 1) * batch_size)."""
    n = head_idx.numel()
    shuffled = torch.randperm(n, generator=gen)                               # [N] random order
    order = shuffled[torch.argsort(head_idx[shuffled], stable=True)]          # grouped by head
    counts = torch.bincount(head_idx[order], minlength=num_heads)
    starts = torch.cumsum(counts, 0) - counts
    position = torch.arange(n) - starts[head_idx[order]]                      # rank within head
    plan = torch.full((num_heads, width), -1, dtype=torch.long)
    plan[head_idx[order], position] = order
    return plan


def _keep(shape: tuple[int, ...], p: float, gen: torch.Generator) -> Tensor | None:
    """A dropout mask scaled by 1/(1-p) (None when p is 0)."""
    if p == 0.0:
        return None
    keep = torch.rand(shape, generator=gen, device=gen.device)
    return keep.ge_(p).mul_(1.0 / (1.0 - p))                                  # in place: 0 or scale


@torch.no_grad()
def _chunk_step(chunk: _Chunk, x: Tensor, targets: Tensor, weight: Tensor, p: float,
                gen: torch.Generator) -> float:
    """One training step of a chunk's heads, gradients by hand (into the chunk's buffers) and
    AdamW; x [G, L, d], targets [G, L] (0/1), weight [G, L] (1/rows for a real row, 0 for padding).
    Returns the chunk's summed per-user mean loss."""
    w, g = chunk.params, chunk.grads
    keep_in, keep_hidden = _keep(x.shape, p, gen), _keep(x.shape, p, gen)
    xd = x if keep_in is None else x * keep_in                                # [G, L, d]
    lowrank = "a" in w
    if lowrank:                                                               # w1 = a @ b
        z = torch.bmm(xd, w["a"])                                             # [G, L, r]
        hidden = torch.baddbmm(w["b1"].unsqueeze(1), z, w["b"]).tanh_()       # [G, L, d]
    else:
        hidden = torch.baddbmm(w["b1"].unsqueeze(1), xd, w["w1"]).tanh_()     # [G, L, d]
    hd = hidden if keep_hidden is None else hidden * keep_hidden
    logits = torch.baddbmm(w["b2"].unsqueeze(1), hd, w["w2"])                # [G, L, 2]
    logp = torch.log_softmax(logits, dim=-1)
    picked = logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)               # [G, L]
    loss = -(picked * weight).sum()
    # d loss / d logits = (softmax - onehot) * weight
    dlogits = logp.exp_()
    dlogits.scatter_add_(-1, targets.unsqueeze(-1), -torch.ones_like(logits[..., :1]))
    dlogits.mul_(weight.unsqueeze(-1))                                        # [G, L, 2]
    torch.bmm(hd.transpose(1, 2), dlogits, out=g["w2"])                       # [G, d, 2]
    torch.sum(dlogits, 1, out=g["b2"])                                        # [G, 2]
    dpre = torch.bmm(dlogits, w["w2"].transpose(1, 2))                        # [G, L, d]
    if keep_hidden is not None:
        dpre.mul_(keep_hidden)
    dpre.mul_(1.0 - hidden * hidden)                                          # through tanh
    torch.sum(dpre, 1, out=g["b1"])                                           # [G, d]
    if lowrank:
        torch.bmm(z.transpose(1, 2), dpre, out=g["b"])                        # [G, r, d]
        torch.bmm(xd.transpose(1, 2), torch.bmm(dpre, w["b"].transpose(1, 2)),
                  out=g["a"])                                                 # [G, d, r]
    else:
        torch.bmm(xd.transpose(1, 2), dpre, out=g["w1"])                      # [G, d, d]
    for name, param in w.items():
        param.grad = g[name]
    chunk.opt.step()
    return float(loss)


def _fit(features: Callable[[Tensor], Tensor], n: int, dim: int, head_idx: Tensor, labels: Tensor,
         num_heads: int, cfg: HeadFitConfig, init: AnyHeadState | None,
         head: HeadConfig | None, device: torch.device) -> HeadBank:
    """The shared loop: `features(rows)` gives the [len(rows), d] inputs of those rows (on
    `device`, where the heads train; row plans stay on the CPU)."""
    head_idx, labels = head_idx.long().cpu(), labels.long().cpu()
    _check_rows(n, head_idx, labels, num_heads)
    gen = torch.Generator().manual_seed(cfg.seed)
    drop = gen if device.type == "cpu" else torch.Generator(device).manual_seed(cfg.seed)
    bank = _initial_bank(num_heads, dim, cfg, init, head, gen).to(device)
    labels_on = labels.to(device)
    chunks = _chunks(bank, torch.bincount(head_idx, minlength=num_heads), cfg)
    if not chunks:
        return bank.eval()
    bs, most = cfg.batch_size, chunks[0].steps
    for epoch in range(cfg.epochs):
        plan = _epoch_plan(head_idx, num_heads, most * bs, gen)               # [U, width]
        total = 0.0
        for step in range(most):
            active = [c for c in chunks if c.steps > step]
            ids = plan[torch.cat([c.heads for c in active]), step * bs:(step + 1) * bs]  # [A, bs]
            ids = ids[:, :int((ids >= 0).sum(1).max())]   # rows come first: drop padding-only
            valid = (ids >= 0).to(device)                 # columns (a last, short step)  [A, L]
            x = torch.zeros(*ids.shape, dim, device=device)                   # [A, L, d]
            x[valid] = features(ids[ids >= 0])       # one call per step: one encoder batch
            weight = valid / valid.sum(1, keepdim=True)                       # 1/rows per row
            targets = labels_on[ids.clamp(min=0).to(device)]                  # [A, L]
            start = 0
            for c in active:
                end = start + c.heads.numel()
                total += _chunk_step(c, x[start:end], targets[start:end], weight[start:end],
                                     cfg.dropout, drop)
                start = end
        log.debug("head fitting epoch %d/%d: summed user loss %.4f", epoch + 1, cfg.epochs,
                  total)
    _write_back(bank, chunks)
    return bank.eval()


@torch.no_grad()
def _write_back(bank: HeadBank, chunks: list[_Chunk]) -> None:
    """Copy the chunks that are not views of the bank into it."""
    for c in chunks:
        for name, param in c.params.items():
            stacked = getattr(bank, name)
            if param.untyped_storage().data_ptr() != stacked.untyped_storage().data_ptr():
                stacked[c.heads] = param


def fit_heads_on_embeddings(embeddings: Tensor, head_idx: Tensor, labels: Tensor, num_heads: int,
                            config: HeadFitConfig | None = None, *,
                            init: AnyHeadState | None = None, head: HeadConfig | None = None,
                            device: str | torch.device | None = None,
                            **overrides: Any) -> HeadBank:
    """Fit `num_heads` heads on precomputed base vectors embeddings [N, d] (the cached path).

    Row i belongs to head head_idx[i] with label labels[i] (0/1). Settings come from `config`,
    then keyword `overrides` (epochs=..., lr=..., batch_size=..., weight_decay=..., dropout=...,
    seed=...). `init` starts every head from one state (e.g. the global head) instead of random;
    `head` is the heads' form (default: `init`'s, else dense). Heads without rows keep their initial
    values. The heads train on `device` (default: the embeddings' device; the returned bank is
    there too). Deterministic for a given seed and device.
    """
    cfg = _resolve(config, overrides)
    if embeddings.dim() != 2:
        raise ValueError(f"embeddings must be [N, d], got shape {tuple(embeddings.shape)}")
    on = torch.device(device) if device is not None else embeddings.device
    x = embeddings.detach().float().to(on)
    return _fit(lambda rows: x[rows.to(on)], x.shape[0], x.shape[1], head_idx, labels, num_heads,
                cfg, init, head, on)


def fit_heads_reencode(base: BaseEncoder, firsts: Sequence[str], seconds: Sequence[str],
                       head_idx: Tensor, labels: Tensor, num_heads: int,
                       config: HeadFitConfig | None = None, *, init: AnyHeadState | None = None,
                       head: HeadConfig | None = None, encode_batch_size: int = 64,
                       device: str | torch.device | None = None,
                       **overrides: Any) -> HeadBank:
    """Like `fit_heads_on_embeddings`, but the frozen base re-encodes each step's pairs (heads on
    `device`, default the base's)."""
    cfg = _resolve(config, overrides)
    if len(firsts) != len(seconds):
        raise ValueError(f"firsts and seconds must have the same length, "
                         f"got {len(firsts)} and {len(seconds)}")

    def features(rows: Tensor) -> Tensor:
        ids = rows.tolist()
        vectors = base.embed([firsts[i] for i in ids], [seconds[i] for i in ids],
                             batch_size=encode_batch_size)
        return vectors.float().to(on)

    on = torch.device(device) if device is not None else base.device
    return _fit(features, len(firsts), base.dim, head_idx, labels, num_heads, cfg, init, head, on)
