"""Per-user heads: the paper's classification head for many users at once.

One head is dropout -> dense (d x d) -> tanh -> dropout -> dense (d x 2); the score is softmax[:, 1].
A `HeadBank` stores U heads as stacked tensors and applies each batch row's own head, so one forward
pass serves rows of many users. Two equivalent ways to apply them (`mode`):

- "segment" (the default): sort rows by head and loop over `segments()`, one matmul per head on
  a view of that head's weights.
- "bmm": sort rows by head, pad each head's rows to the longest group and run one batched matmul on
  the gathered weights of the heads present (gathered once per head, not once per row).

Both give the same numbers. The loop is the faster one here: gathering copies d*d floats per head
(590 KB at d=384), which costs more than the Python loop's few microseconds per head; measured in
docs/model.md (4-10x faster without gradients, equal or faster with them).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

__all__ = ["HeadBank", "HeadState", "segments", "sort_by_head"]

HeadMode = Literal["bmm", "segment"]
_PARAM_NAMES = ("w1", "b1", "w2", "b2")


@dataclass(frozen=True)
class HeadState:
    """One user's head: w1 [d, d], b1 [d], w2 [d, 2], b2 [2] (inputs multiply from the left)."""

    w1: Tensor
    b1: Tensor
    w2: Tensor
    b2: Tensor

    def __post_init__(self) -> None:
        d = self.w1.shape[0] if self.w1.dim() == 2 else -1
        want = {"w1": (d, d), "b1": (d,), "w2": (d, 2), "b2": (2,)}
        got = {name: tuple(getattr(self, name).shape) for name in _PARAM_NAMES}
        if d < 1 or got != want:
            raise ValueError(f"head tensors must have shapes {want} for d={d}, got {got}")

    @property
    def dim(self) -> int:
        return int(self.w1.shape[0])

    def tensors(self) -> dict[str, Tensor]:
        """The four tensors by name (contiguous, CPU float32): what a head file stores."""
        return {n: getattr(self, n).detach().to("cpu", torch.float32).contiguous()
                for n in _PARAM_NAMES}

    @classmethod
    def from_tensors(cls, tensors: Mapping[str, Tensor]) -> HeadState:
        missing = [n for n in _PARAM_NAMES if n not in tensors]
        extra = sorted(set(tensors) - set(_PARAM_NAMES))
        if missing or extra:
            raise ValueError(f"a head needs exactly {list(_PARAM_NAMES)}, "
                             f"missing {missing}, unexpected {extra}")
        return cls(**{n: tensors[n] for n in _PARAM_NAMES})


def sort_by_head(head_idx: Tensor) -> tuple[Tensor, Tensor]:
    """(order, sorted_heads): a stable permutation grouping rows by head, and the sorted heads."""
    order = torch.argsort(head_idx, stable=True)
    return order, head_idx[order]


def segments(head_idx: Tensor | Sequence[int]) -> list[tuple[int, int, int]]:
    """Runs of equal consecutive heads as (head, start, end), end exclusive.

    Any order is correct (each run is applied with its own head), but only rows sorted by head (see
    `sort_by_head`) give one segment per head; a head whose rows are split gets several segments.
    """
    idx = torch.as_tensor(head_idx, dtype=torch.long)
    if idx.dim() != 1:
        raise ValueError(f"head_idx must be 1-D, got shape {tuple(idx.shape)}")
    if idx.numel() == 0:
        return []
    heads, counts = torch.unique_consecutive(idx, return_counts=True)
    ends = torch.cumsum(counts, 0).tolist()
    starts = [0, *ends[:-1]]
    return list(zip(heads.tolist(), starts, ends, strict=True))


class HeadBank(nn.Module):
    """U heads of width d, applied per row: forward(x[B, d], head_idx[B]) -> logits[B, 2]."""

    def __init__(self, num_heads: int, dim: int, *, dropout: float = 0.1, mode: HeadMode = "segment",
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        if num_heads < 1 or dim < 1:
            raise ValueError(f"num_heads and dim must be >= 1, got {num_heads} and {dim}")
        if mode not in ("bmm", "segment"):
            raise ValueError(f"mode must be 'segment' or 'bmm', got {mode!r}")
        self.mode: HeadMode = mode
        self.dropout = nn.Dropout(dropout)
        # Like nn.Linear: weights and biases uniform in +-1/sqrt(fan_in) (kaiming_uniform, a=sqrt(5)).
        bound = 1.0 / math.sqrt(dim)

        def uniform(*shape: int) -> nn.Parameter:
            return nn.Parameter(torch.empty(shape).uniform_(-bound, bound, generator=generator))

        self.w1 = uniform(num_heads, dim, dim)  # [U, d, d]
        self.b1 = uniform(num_heads, dim)       # [U, d]
        self.w2 = uniform(num_heads, dim, 2)    # [U, d, 2]
        self.b2 = uniform(num_heads, 2)         # [U, 2]

    @property
    def num_heads(self) -> int:
        return int(self.w1.shape[0])

    @property
    def dim(self) -> int:
        return int(self.w1.shape[1])

    @classmethod
    def from_states(cls, states: Sequence[HeadState], *, dropout: float = 0.1,
                    mode: HeadMode = "segment") -> HeadBank:
        """A bank holding `states` in order (head i is states[i]), stacked without a random init."""
        if not states:
            raise ValueError("from_states needs at least one head, got none")
        dims = sorted({s.dim for s in states})
        if len(dims) > 1:
            raise ValueError(f"all heads of a bank need the same d, got {dims}")
        bank = cls(1, dims[0], dropout=dropout, mode=mode)
        for name in _PARAM_NAMES:
            stacked = torch.stack([getattr(s, name).detach() for s in states]).float()
            setattr(bank, name, nn.Parameter(stacked))       # [U, ...]
        return bank

    def extract(self, i: int) -> HeadState:
        """A detached copy of head i."""
        self._check_index(i)
        return HeadState(**{n: getattr(self, n)[i].detach().clone() for n in _PARAM_NAMES})

    @torch.no_grad()
    def load(self, i: int, state: HeadState) -> None:
        """Overwrite head i with `state` (same d)."""
        self._check_index(i)
        if state.dim != self.dim:
            raise ValueError(f"head {i}: bank has d={self.dim}, state has d={state.dim}")
        for name in _PARAM_NAMES:
            getattr(self, name)[i].copy_(getattr(state, name))

    def _check_index(self, i: int) -> None:
        if not 0 <= i < self.num_heads:
            raise IndexError(f"head index must be in [0, {self.num_heads}), got {i}")

    def forward(self, x: Tensor, head_idx: Tensor) -> Tensor:
        """x [B, d], head_idx [B] (long, each in [0, U)) -> logits [B, 2]."""
        if x.dim() != 2 or x.shape[1] != self.dim or head_idx.shape != (x.shape[0],):
            raise ValueError(f"expected x [B, {self.dim}] and head_idx [B], got "
                             f"{tuple(x.shape)} and {tuple(head_idx.shape)}")
        if x.shape[0] == 0:
            return x.new_zeros(0, 2)
        order, sorted_heads = sort_by_head(head_idx)
        low, high = int(sorted_heads[0]), int(sorted_heads[-1])
        if low < 0 or high >= self.num_heads:
            raise IndexError(f"head_idx must lie in [0, {self.num_heads}), got values from "
                             f"{low} to {high}")
        xs = x[order]                                           # [B, d], grouped by head
        apply = self._apply_bmm if self.mode == "bmm" else self._apply_segments
        out_sorted = apply(xs, sorted_heads)                    # [B, 2]
        out = torch.empty_like(out_sorted)
        out[order] = out_sorted                                 # back to the caller's row order
        return out

    def _apply_bmm(self, xs: Tensor, sorted_heads: Tensor) -> Tensor:
        heads, counts = torch.unique_consecutive(sorted_heads, return_counts=True)  # [G], [G]
        g, longest = heads.numel(), int(counts.max())
        group = torch.repeat_interleave(torch.arange(g, device=xs.device), counts)  # [B]
        starts = torch.cumsum(counts, 0) - counts                                  # [G]
        pos = torch.arange(xs.shape[0], device=xs.device) - starts[group]          # [B]
        padded = xs.new_zeros(g, longest, self.dim)                                # [G, L, d]
        padded[group, pos] = self.dropout(xs)
        hidden = torch.tanh(torch.bmm(padded, self.w1[heads]) + self.b1[heads][:, None, :])
        logits = torch.bmm(self.dropout(hidden), self.w2[heads])                   # [G, L, 2]
        logits = logits + self.b2[heads][:, None, :]
        return logits[group, pos]                                                  # [B, 2]

    def _apply_segments(self, xs: Tensor, sorted_heads: Tensor) -> Tensor:
        params = (self.w1, self.b1, self.w2, self.b2)
        if torch.is_grad_enabled():
            # Views from one unbind get their gradients stacked once in backward; indexing the
            # parameter per segment would build a full [U, ...] gradient per segment instead.
            w1, b1, w2, b2 = (p.unbind(0) for p in params)
        else:
            w1, b1, w2, b2 = params
        parts = []
        for head, start, end in segments(sorted_heads):
            rows = self.dropout(xs[start:end])                                   # [n, d]
            hidden = torch.tanh(rows @ w1[head] + b1[head])                      # [n, d]
            parts.append(self.dropout(hidden) @ w2[head] + b2[head])             # [n, 2]
        return torch.cat(parts)                                                  # [B, 2]
