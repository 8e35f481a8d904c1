"""Fitting per-user heads with the base frozen: every user's head trained at once, as if alone.

Every head trains on its own rows only: at each of its steps a head takes the next mini-batch of
its own rows, its loss is the mean over them, and AdamW moves it with its own step count. Heads do
not share trained parameters (a residual bank's shared first layer is frozen here), so a user's
head follows the same trajectory it would fitting alone (up to the random order of its rows and
its dropout draws).

How that is made cheap (benchmarks/fit_heads.py; the profile is in docs/training.md): users are
grouped by how many steps an epoch gives them (ceil(rows / batch_size)) and cut into chunks of
`_CHUNK_HEADS` heads whose tensors are stacked [G, ...] (a view of the bank where the chunk's heads
are consecutive). A chunk runs all its epochs before the next chunk starts, so its weights,
gradients and AdamW moments (one workspace reused by every chunk) stay in the CPU's cache from
step to step. A step is one padded batch [G, L, d] (one gather from the cached vectors): a batched
matmul forward (`torch.baddbmm`), the gradients written by hand into the workspace (no autograd
graph, no fresh [G, d, d] gradient per step) and one fused AdamW over the stacked tensors. No
per-user Python, no gather or scatter of head weights: every head of a chunk has the same step
count, and a head out of rows is never stepped (no decay, no momentum).

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
from torch import Tensor
from torch.optim.adamw import adamw

from hydralm.config import StrictModel
from hydralm.model.config import HeadConfig
from hydralm.model.heads import AnyHeadState, HeadBank, HeadState

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
    """Up to `_CHUNK_HEADS` heads with the same steps per epoch, fitted as one stacked batch."""

    heads: Tensor                       # [G] bank indices
    steps: int                          # steps per epoch of every head here


class _Workspace:
    """The buffers one chunk trains with, allocated once for the largest chunk and reused (each
    chunk zeroes its AdamW moments): gradients written in place every step, the two moments and
    the step count. Reuse keeps them in cache and spares a fresh page per chunk."""

    def __init__(self, bank: HeadBank, heads: int) -> None:
        stacked = {name: getattr(bank, name).detach() for name in bank.names}
        self.grads, self.m, self.v = ({name: t.new_empty(heads, *t.shape[1:])
                                       for name, t in stacked.items()} for _ in range(3))
        # one step count per tensor: the fused update advances each one it is given
        self.steps = [torch.zeros((), device=t.device) for t in stacked.values()]

    def start(self, size: int) -> tuple[dict[str, Tensor], ...]:
        """The first `size` heads' gradient buffers and fresh (zero) moments."""
        views = tuple({name: t[:size] for name, t in group.items()}
                      for group in (self.grads, self.m, self.v))
        for group in views[1:]:
            for t in group.values():
                t.zero_()
        for step in self.steps:
            step.zero_()
        return views


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
                  head: HeadConfig | None, gen: torch.Generator,
                  shared: Tensor | None) -> HeadBank:
    """Every head a copy of `init` (no random draw to overwrite), or random of form `head`.
    Residual heads from a dense `init` (the global head, whose w1 must be `shared`): a random,
    b = 0 and b1, w2, b2 copied, so every head starts exactly at the global head."""
    if head is not None and head.form == "residual" and isinstance(init, HeadState):
        return _residual_from_global(num_heads, cfg, init, head, gen, shared)
    if init is None:
        return HeadBank(num_heads, dim, dropout=cfg.dropout, head=head, generator=gen,
                        shared=shared)
    if head is not None and head.shape_key != init.config.shape_key:
        raise ValueError(f"init is a {init.config.describe()} head, but head asks for "
                         f"{head.describe()} heads")
    if init.dim != dim:
        raise ValueError(f"init has d={init.dim}, the rows have d={dim}")
    # the bank stores in `head`'s dtype (a float32 global head starts int8 or bfloat16 heads)
    return HeadBank.from_states([init] * num_heads, dropout=cfg.dropout, shared=shared,
                                head=head)


@torch.no_grad()
def _residual_from_global(num_heads: int, cfg: HeadFitConfig, init: HeadState,
                          head: HeadConfig, gen: torch.Generator,
                          shared: Tensor | None) -> HeadBank:
    if shared is None:
        shared = init.w1
    elif tuple(shared.shape) != tuple(init.w1.shape) or not torch.equal(
            shared.detach().cpu().float(), init.w1.detach().cpu().float()):
        raise ValueError("residual heads start at the global head, whose w1 must be their "
                         "shared first layer; init's w1 differs from shared")
    bank = HeadBank(num_heads, init.dim, dropout=cfg.dropout, head=head, generator=gen,
                    shared=shared)                                   # b = 0: starts at w1
    for name in ("b1", "w2", "b2"):
        getattr(bank, name).copy_(getattr(init, name).float().expand_as(getattr(bank, name)))
    return bank


# Heads per chunk on a CPU: a chunk runs all its epochs before the next one starts, so its tensors
# (weights, gradients, two AdamW moments: 4 * 590 KB per dense 384-d head) stay in the CPU's cache
# from step to step instead of streaming the whole bank from memory every step; 16 measured best
# (docs/training.md). On a GPU, more heads per kernel matter more than cache.
_CHUNK_HEADS = 16
_CUDA_CHUNK_HEADS = 1024


def _chunk_tensor(stacked: Tensor, heads: Tensor) -> Tensor:
    """The rows `heads` of a bank tensor: a view when they are consecutive (updates then land in
    the bank itself), else a copy (written back by `_write_back`)."""
    first = int(heads[0])
    if int(heads[-1]) - first + 1 == heads.numel():                           # sorted, so a range
        return stacked.detach()[first:first + heads.numel()]
    return stacked.detach()[heads]


def _chunks(rows_per_head: Tensor, cfg: HeadFitConfig, size: int) -> list[_Chunk]:
    """The heads with rows, by steps per epoch (most first), in chunks of `size` heads."""
    steps = (rows_per_head + cfg.batch_size - 1) // cfg.batch_size            # [U]
    return [_Chunk(heads, int(count))
            for count in sorted(set(steps.tolist()) - {0}, reverse=True)
            for heads in torch.nonzero(steps == count).flatten().split(size)]  # [G]


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
def _gradients(w: dict[str, Tensor], g: dict[str, Tensor], x: Tensor, targets: Tensor,
               weight: Tensor, p: float, gen: torch.Generator,
               shared: Tensor | None = None) -> Tensor:
    """The chunk's gradients, by hand, into `g`; x [G, L, d], targets [G, L] (0/1), weight [G, L]
    (1/rows for a real row, 0 for padding). Returns the chunk's summed per-user mean loss.
    `shared` [d, d]: a residual bank's frozen first layer (added to x @ a @ b; no gradient)."""
    keep_in, keep_hidden = _keep(x.shape, p, gen), _keep(x.shape, p, gen)
    xd = x if keep_in is None else x * keep_in                                # [G, L, d]
    lowrank = "a" in w
    if lowrank:                                                               # w1 = a @ b
        z = torch.bmm(xd, w["a"])                                             # [G, L, r]
        bias = w["b1"].unsqueeze(1)                                           # [G, 1, d]
        if shared is not None:                                                # + x @ shared
            bias = torch.matmul(xd, shared).add_(bias)                        # [G, L, d]
        hidden = torch.baddbmm(bias, z, w["b"]).tanh_()                       # [G, L, d]
    else:
        hidden = torch.baddbmm(w["b1"].unsqueeze(1), xd, w["w1"]).tanh_()     # [G, L, d]
    hd = hidden if keep_hidden is None else hidden * keep_hidden
    logits = torch.baddbmm(w["b2"].unsqueeze(1), hd, w["w2"])                # [G, L, 2]
    logp = torch.log_softmax(logits, dim=-1)
    loss = -(logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1) * weight).sum()
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
    return loss


def _fit_chunk(chunk: _Chunk, bank: HeadBank, work: _Workspace, plans: list[Tensor],
               features: Callable[[Tensor], Tensor], labels: Tensor, cfg: HeadFitConfig,
               gen: torch.Generator) -> list[Tensor]:
    """Every epoch of one chunk's heads: a padded batch [G, L, d] per step, gradients by hand and
    one fused AdamW over the stacked tensors. Returns the chunk's loss per epoch."""
    w = {name: _chunk_tensor(getattr(bank, name), chunk.heads) for name in bank.names}
    g, m, v = work.start(chunk.heads.numel())
    bs, names, losses = cfg.batch_size, list(w), []
    shared = None if bank.shared_w1 is None else bank.shared_w1.detach()     # frozen [d, d]
    for plan in plans:
        rows = plan[chunk.heads]                                              # [G, width]
        loss = torch.zeros((), device=labels.device)
        for step in range(chunk.steps):
            ids = rows[:, step * bs:(step + 1) * bs]
            ids = ids[:, :int((ids >= 0).sum(1).max())]   # rows come first: drop padding-only
            valid = (ids >= 0).to(labels.device)          # columns (a last, short step)  [G, L]
            x = features(ids)                                                 # [G, L, d]
            weight = valid / valid.sum(1, keepdim=True)                       # 1/rows per row
            targets = labels[ids.clamp(min=0).to(labels.device)]              # [G, L]
            loss += _gradients(w, g, x, targets, weight, cfg.dropout, gen, shared)
            adamw([w[k] for k in names], [g[k] for k in names], [m[k] for k in names],
                  [v[k] for k in names], [], work.steps, fused=True,
                  amsgrad=False, beta1=0.9, beta2=0.999, lr=cfg.lr,
                  weight_decay=cfg.weight_decay, eps=1e-8, maximize=False)
        losses.append(loss)
    _write_back(bank, chunk.heads, w)
    return losses


def _fit(features: Callable[[Tensor], Tensor], n: int, dim: int, head_idx: Tensor, labels: Tensor,
         num_heads: int, cfg: HeadFitConfig, init: AnyHeadState | None,
         head: HeadConfig | None, device: torch.device, shared: Tensor | None) -> HeadBank:
    """The shared loop: `features(ids)` gives the inputs [G, L, d] of row ids [G, L] (-1:
    padding, zeros) on `device`, where the heads train; row plans stay on the CPU. Chunk after
    chunk, each through all epochs: heads are independent, so the order only changes which random
    numbers a head draws."""
    head_idx, labels = head_idx.long().cpu(), labels.long().cpu()
    _check_rows(n, head_idx, labels, num_heads)
    gen = torch.Generator().manual_seed(cfg.seed)
    drop = gen if device.type == "cpu" else torch.Generator(device).manual_seed(cfg.seed)
    bank = _initial_bank(num_heads, dim, cfg, init, head, gen, shared).to(device)
    size = _CUDA_CHUNK_HEADS if device.type == "cuda" else _CHUNK_HEADS
    chunks = _chunks(torch.bincount(head_idx, minlength=num_heads), cfg, size)
    if not chunks:
        return bank.eval()
    width = chunks[0].steps * cfg.batch_size
    plans = [_epoch_plan(head_idx, num_heads, width, gen) for _ in range(cfg.epochs)]
    work = _Workspace(bank, max(c.heads.numel() for c in chunks))
    labels_on = labels.to(device)
    losses = [_fit_chunk(c, bank, work, plans, features, labels_on, cfg, drop) for c in chunks]
    if log.isEnabledFor(logging.DEBUG):
        for epoch, total in enumerate(torch.stack([torch.stack(x) for x in losses]).sum(0)):
            log.debug("head fitting epoch %d/%d: summed user loss %.4f", epoch + 1, cfg.epochs,
                      float(total))
    return bank.eval()


@torch.no_grad()
def _write_back(bank: HeadBank, heads: Tensor, tensors: dict[str, Tensor]) -> None:
    """Copy a chunk's tensors into the bank where they are copies, not views of it."""
    for name, tensor in tensors.items():
        stacked = getattr(bank, name)
        if tensor.untyped_storage().data_ptr() != stacked.untyped_storage().data_ptr():
            stacked[heads] = tensor


def fit_heads_on_embeddings(embeddings: Tensor, head_idx: Tensor, labels: Tensor, num_heads: int,
                            config: HeadFitConfig | None = None, *,
                            init: AnyHeadState | None = None, head: HeadConfig | None = None,
                            device: str | torch.device | None = None,
                            shared: Tensor | None = None, **overrides: Any) -> HeadBank:
    """Fit `num_heads` heads on precomputed base vectors embeddings [N, d] (the cached path).

    Row i belongs to head head_idx[i] with label labels[i] (0/1). Settings come from `config`,
    then keyword `overrides` (epochs=..., lr=..., batch_size=..., weight_decay=..., dropout=...,
    seed=...). `init` starts every head from one state (e.g. the global head) instead of random;
    `head` is the heads' form (default: `init`'s, else dense). Residual heads need `shared`, the
    kind's frozen first layer (the global head's w1; default: a dense `init`'s w1): only their
    a, b, b1, w2, b2 train, and from a dense `init` (the global head) they start exactly at it
    (b = 0). Heads without rows keep their initial values. The heads train on `device` (default: the embeddings' device; the returned bank is
    there too). Deterministic for a given seed and device.
    """
    cfg = _resolve(config, overrides)
    if embeddings.dim() != 2:
        raise ValueError(f"embeddings must be [N, d], got shape {tuple(embeddings.shape)}")
    on = torch.device(device) if device is not None else embeddings.device
    n, dim = embeddings.shape
    # a zero row first: row i is at i + 1 and padding (-1) at 0, so a step's batch is one gather
    table = torch.cat([embeddings.new_zeros(1, dim).float(), embeddings.detach().float()]).to(on)

    def features(ids: Tensor) -> Tensor:
        return table.index_select(0, (ids + 1).flatten().to(on)).view(*ids.shape, dim)

    return _fit(features, n, dim, head_idx, labels, num_heads, cfg, init, head, on, shared)


def fit_heads_reencode(base: BaseEncoder, firsts: Sequence[str], seconds: Sequence[str],
                       head_idx: Tensor, labels: Tensor, num_heads: int,
                       config: HeadFitConfig | None = None, *, init: AnyHeadState | None = None,
                       head: HeadConfig | None = None, encode_batch_size: int = 64,
                       device: str | torch.device | None = None, shared: Tensor | None = None,
                       **overrides: Any) -> HeadBank:
    """Like `fit_heads_on_embeddings`, but the frozen base re-encodes each step's pairs (heads on
    `device`, default the base's)."""
    cfg = _resolve(config, overrides)
    if len(firsts) != len(seconds):
        raise ValueError(f"firsts and seconds must have the same length, "
                         f"got {len(firsts)} and {len(seconds)}")

    def features(ids: Tensor) -> Tensor:
        real = ids >= 0
        rows = ids[real].tolist()
        x = torch.zeros(*ids.shape, base.dim, device=on)                     # [G, L, d]
        x[real.to(on)] = base.embed([firsts[i] for i in rows], [seconds[i] for i in rows],
                                    batch_size=encode_batch_size).float().to(on)
        return x

    on = torch.device(device) if device is not None else base.device
    return _fit(features, len(firsts), base.dim, head_idx, labels, num_heads, cfg, init, head, on,
                shared)
