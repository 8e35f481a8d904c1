"""Per-user heads: the paper's classification head for many users at once, in three forms.

One head is dropout -> first layer (d -> d) -> tanh -> dropout -> dense (d x 2); the score is
softmax[:, 1]. The first layer's form is a setting (`HeadConfig`, per model kind):
- "dense" (`HeadState`, the paper's): w1 [d, d] + b1 [d]. 148,610 numbers at d=384.
- "lowrank" (`LowRankHeadState`): w1 = a [d, r] @ b [r, d] + b1 [d], each user with its own
  factors (applied as (x @ a) @ b: w1 is never formed). 2*d*r + 3*d + 2 numbers: 7,298 at r=8.
  Self-contained, but measured short of the dense head on the tagging probe (docs/model.md).
- "residual" (`ResidualHeadState`): w1 = the kind's SHARED w1 (the global head's, one [d, d] per
  bank) + a [d, r] @ b [r, d] per user, with b starting at zero (LoRA) so a new user starts exactly
  at the global head. The same per-user numbers as "lowrank". The shared layer is a second artifact
  every head depends on, so a residual head names it (`shared_digest`) and a bank refuses a head
  fitted on another. We first argued against a shared part (a head should stay self-contained, and
  a user should not be confined to what training users taught); the probe (benchmarks/head_forms.py)
  says the shared layer is what the per-user factors were missing: with a well-fitted global head,
  residual r=8 matches the dense head on both synthetic tasks at 15 KB (bf16) or 8.5 KB (int8) per
  user, where per-user factors from scratch lose about 0.07 on tagging. Training learns the
  shared layer as the global head's w1 (that head's a = b = 0 stay 0; it is published dense
  float32, `HeadBank.extract_dense`), fitting keeps it frozen and starts new users at the global
  head, and a scorer stacks the heads that name it with the global head (`from_global`).

A `HeadBank` stores U heads of one form as stacked tensors and applies each batch row's own head,
so one forward pass serves rows of many users. Two equivalent ways to apply them (`mode`):

- "segment" (the default): sort rows by head and loop over `segments()`, one matmul per head on
  a view of that head's weights.
- "bmm": sort rows by head, pad each head's rows to the longest group and run one batched matmul on
  the gathered weights of the heads present (gathered once per head, not once per row).

Both give the same numbers. The loop is the faster one here for dense heads: gathering copies d*d
floats per head (590 KB at d=384), which costs more than the Python loop's few microseconds per
head; measured in docs/model.md (4-10x faster without gradients, equal or faster with them).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import ClassVar, Literal

import torch
from torch import Tensor, nn

from hydralm.errors import ArtifactError
from hydralm.model.config import HeadConfig, HeadDtype

__all__ = ["AnyHeadState", "HeadBank", "HeadState", "LowRankHeadState", "ResidualHeadState",
           "check_head_config", "head_state_class", "segments", "shared_digest", "sort_by_head"]

HeadMode = Literal["bmm", "segment"]


class _HeadTensors:
    """What every head form shares: named tensors checked against the form's shapes."""

    form: ClassVar[str]
    names: ClassVar[tuple[str, ...]]
    dtype: HeadDtype

    @staticmethod
    def shapes(dim: int, rank: int) -> dict[str, tuple[int, ...]]:
        raise NotImplementedError

    def _check_shapes(self, dim: int, rank: int) -> None:
        want = self.shapes(dim, rank)
        got = {name: tuple(getattr(self, name).shape) for name in self.names}
        if dim < 1 or rank < 1 or got != want:
            raise ValueError(f"{self.form} head tensors must have shapes {want} for d={dim}"
                             f"{f', r={rank}' if self.form != 'dense' else ''}, got {got}")

    @property
    def rank(self) -> int | None:
        return None

    @property
    def shape_key(self) -> tuple[str, int | None]:
        """(form, rank or None): what must agree for heads to stack (see HeadConfig.shape_key)."""
        return (self.form, self.rank)

    @property
    def config(self) -> HeadConfig:
        """The head's form, rank and storage dtype as a HeadConfig."""
        return HeadConfig(form=self.form, rank=self.rank or 8, dtype=self.dtype)

    def tensors(self) -> dict[str, Tensor]:
        """The tensors by name (contiguous, CPU float32): what a head file stores, before the
        storage dtype is applied."""
        return {n: getattr(self, n).detach().to("cpu", torch.float32).contiguous()
                for n in self.names}

    @classmethod
    def from_tensors(cls, tensors: Mapping[str, Tensor], dtype: HeadDtype = "float32",
                     **fields: str):
        """The state of `tensors` (exactly the form's names); `fields`: the form's other fields
        (a residual head's `shared`)."""
        missing = [n for n in cls.names if n not in tensors]
        extra = sorted(set(tensors) - set(cls.names))
        if missing or extra:
            raise ValueError(f"a {cls.form} head needs exactly {list(cls.names)}, "
                             f"missing {missing}, unexpected {extra}")
        return cls(**{n: tensors[n] for n in cls.names}, dtype=dtype, **fields)


@dataclass(frozen=True)
class HeadState(_HeadTensors):
    """One user's dense head: w1 [d, d], b1 [d], w2 [d, 2], b2 [2] (inputs multiply from the left).
    `dtype` is how its file stores it (the tensors here are whatever was given, usually float32)."""

    w1: Tensor
    b1: Tensor
    w2: Tensor
    b2: Tensor
    dtype: HeadDtype = "float32"
    form: ClassVar[str] = "dense"
    names: ClassVar[tuple[str, ...]] = ("w1", "b1", "w2", "b2")

    @staticmethod
    def shapes(dim: int, rank: int) -> dict[str, tuple[int, ...]]:
        return {"w1": (dim, dim), "b1": (dim,), "w2": (dim, 2), "b2": (2,)}

    def __post_init__(self) -> None:
        self._check_shapes(self.w1.shape[0] if self.w1.dim() == 2 else -1, 1)

    @property
    def dim(self) -> int:
        return int(self.w1.shape[0])


@dataclass(frozen=True)
class _FactoredHead(_HeadTensors):
    """What the low-rank and residual forms share: factors a [d, r] and b [r, d] in the first
    layer, then b1 [d], w2 [d, 2], b2 [2]."""

    a: Tensor
    b: Tensor
    b1: Tensor
    w2: Tensor
    b2: Tensor
    dtype: HeadDtype = "float32"
    names: ClassVar[tuple[str, ...]] = ("a", "b", "b1", "w2", "b2")

    @staticmethod
    def shapes(dim: int, rank: int) -> dict[str, tuple[int, ...]]:
        return {"a": (dim, rank), "b": (rank, dim), "b1": (dim,), "w2": (dim, 2), "b2": (2,)}

    def __post_init__(self) -> None:
        ok = self.a.dim() == 2
        self._check_shapes(self.a.shape[0] if ok else -1, self.a.shape[1] if ok else -1)

    @property
    def dim(self) -> int:
        return int(self.a.shape[0])

    @property
    def rank(self) -> int:
        return int(self.a.shape[1])


@dataclass(frozen=True)
class LowRankHeadState(_FactoredHead):
    """One user's low-rank head: w1 = a [d, r] @ b [r, d], then b1 [d], w2 [d, 2], b2 [2]."""

    form: ClassVar[str] = "lowrank"


def shared_digest(w1: Tensor) -> str:
    """The sha256 naming a shared first layer w1 [d, d] (its float32 values and shape): what a
    residual head records of the layer it was fitted on, and what a bank checks it against."""
    t = w1.detach().to("cpu", torch.float32).contiguous()
    digest = hashlib.sha256(f"w1:{tuple(t.shape)};".encode())
    digest.update(t.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class ResidualHeadState(_FactoredHead):
    """One user's residual head: first layer = the kind's SHARED w1 [d, d] (the global head's,
    stored once, not here) + a [d, r] @ b [r, d]; then b1 [d], w2 [d, 2], b2 [2]. `shared` is the
    `shared_digest` of the w1 it was fitted on: it is applied only with that layer. `layer`: that
    w1 itself once a loader has matched it (`with_layer`), so a scorer can stack the head without
    looking the layer up again; never stored in the head's file."""

    shared: str = ""
    layer: Tensor | None = field(default=None, repr=False, compare=False)
    form: ClassVar[str] = "residual"

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.shared) != 64:
            raise ValueError(f"a residual head names its shared first layer by a sha256 (64 hex "
                             f"digits), got {self.shared!r}")

    def with_layer(self, w1: Tensor, digest: str | None = None) -> ResidualHeadState:
        """This head carrying its shared first layer `w1` ([d, d]; `digest`: its `shared_digest`,
        when the caller knows it); ValueError when w1 is not the layer the head was fitted on."""
        found = digest or shared_digest(w1)
        if found != self.shared:
            raise ValueError(f"this residual head was fitted on the shared first layer "
                             f"{self.shared[:12]}, the layer given is {found[:12]}")
        return replace(self, layer=w1)

    @classmethod
    def from_global(cls, head: HeadState, rank: int, dtype: HeadDtype = "float32",
                    digest: str | None = None) -> ResidualHeadState:
        """The dense global head `head` as a residual head on its own w1 (a = b = 0): what a
        user without a head of their own computes, stackable with residual users' heads."""
        d = head.dim
        zeros = head.w1.new_zeros
        return cls(a=zeros(d, rank), b=zeros(rank, d), b1=head.b1, w2=head.w2, b2=head.b2,
                   dtype=dtype, shared=digest or shared_digest(head.w1), layer=head.w1)


AnyHeadState = HeadState | LowRankHeadState | ResidualHeadState
_STATE_CLASSES: dict[str, type[AnyHeadState]] = {
    "dense": HeadState, "lowrank": LowRankHeadState, "residual": ResidualHeadState}


def head_state_class(form: str) -> type[AnyHeadState]:
    """The state class of a head form ('dense', 'lowrank' or 'residual')."""
    try:
        return _STATE_CLASSES[form]
    except KeyError:
        raise ValueError(f"head form must be one of {sorted(_STATE_CLASSES)}, "
                         f"got {form!r}") from None


def check_head_config(head: AnyHeadState, expected: HeadConfig, what: str) -> AnyHeadState:
    """`head` when its form (and rank) is `expected`'s; otherwise an ArtifactError naming both.
    The storage dtype may differ: every dtype loads to the same float32 computation."""
    if head.shape_key != expected.shape_key:
        raise ArtifactError(f"{what} is a {head.config.describe()} head, but the base expects "
                            f"{expected.describe()} heads; refit it with the base's head form")
    return head


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
    """U heads of width d and one form, applied per row: forward(x[B, d], head_idx[B]) ->
    logits[B, 2]. Its parameters are the form's tensors stacked over heads (dense: w1 [U, d, d],
    b1 [U, d], w2 [U, d, 2], b2 [U, 2]; low-rank and residual: a [U, d, r] and b [U, r, d] instead
    of w1), in the order of the state class's `names`; a residual bank also holds `shared_w1`
    [d, d] once (a parameter: trainable with the training users' heads, frozen by whoever fits new
    users' heads by leaving it out of the optimizer)."""

    def __init__(self, num_heads: int, dim: int, *, dropout: float = 0.1, mode: HeadMode = "segment",
                 head: HeadConfig | None = None, generator: torch.Generator | None = None,
                 shared: Tensor | None = None) -> None:
        super().__init__()
        if num_heads < 1 or dim < 1:
            raise ValueError(f"num_heads and dim must be >= 1, got {num_heads} and {dim}")
        if mode not in ("bmm", "segment"):
            raise ValueError(f"mode must be 'segment' or 'bmm', got {mode!r}")
        self.head = head or HeadConfig()
        if self.head.form != "dense" and self.head.rank > dim:
            raise ValueError(f"a {self.head.form} head's rank must be at most d={dim}, "
                             f"got {self.head.rank}")
        self.mode: HeadMode = mode
        self.dropout = nn.Dropout(dropout)
        self.state_class = head_state_class(self.head.form)
        self.shared_w1 = self._shared(shared, dim)                      # [d, d] or None
        rank = self.head.rank
        # Like nn.Linear: weights and biases uniform in +-1/sqrt(fan_in) (kaiming_uniform, a=sqrt(5));
        # the low-rank b's fan-in is r, so x @ a @ b starts at the dense layer's scale (1/sqrt(3)).
        # A residual b starts at zero (LoRA): every residual head starts at the shared layer.
        fan_in = {"b": rank}
        for name, shape in self.state_class.shapes(dim, rank).items():
            bound = 1.0 / math.sqrt(fan_in.get(name, dim))
            tensor = torch.empty(num_heads, *shape).uniform_(-bound, bound, generator=generator)
            if self.shared_w1 is not None and name == "b":
                tensor.zero_()
            setattr(self, name, nn.Parameter(tensor))                    # [U, ...]

    def _shared(self, shared: Tensor | None, dim: int) -> nn.Parameter | None:
        """The residual form's shared first layer [d, d] (one parameter for all heads)."""
        if self.head.form != "residual":
            if shared is not None:
                raise ValueError(f"only residual heads take a shared first layer, these are "
                                 f"{self.head.describe()}")
            return None
        if shared is None:
            raise ValueError("a residual head bank needs its kind's shared first layer "
                             "(shared=w1 [d, d]: the global head's w1, or a fresh one to train)")
        if tuple(shared.shape) != (dim, dim):
            raise ValueError(f"the shared first layer must be [{dim}, {dim}], "
                             f"got {tuple(shared.shape)}")
        return nn.Parameter(shared.detach().clone().float())

    @staticmethod
    def fresh_shared(dim: int, generator: torch.Generator | None = None) -> Tensor:
        """A random shared first layer [d, d] to train (initialised like a dense head's w1)."""
        bound = 1.0 / math.sqrt(dim)
        return torch.empty(dim, dim).uniform_(-bound, bound, generator=generator)

    @property
    def shared_sha(self) -> str | None:
        """`shared_digest` of the shared first layer (residual banks), else None."""
        return None if self.shared_w1 is None else shared_digest(self.shared_w1)

    @property
    def num_heads(self) -> int:
        return int(self.b1.shape[0])

    @property
    def dim(self) -> int:
        return int(self.b1.shape[1])

    @property
    def names(self) -> tuple[str, ...]:
        return self.state_class.names

    @classmethod
    def from_states(cls, states: Sequence[AnyHeadState], *, dropout: float = 0.1,
                    mode: HeadMode = "segment", shared: Tensor | None = None,
                    shared_sha: str | None = None, head: HeadConfig | None = None) -> HeadBank:
        """A bank holding `states` in order (head i is states[i]), stacked without a random init
        of more than one head. All states need one form (and rank) and one d; residual states
        need `shared`, the first layer every one of them names. `shared_sha`: that layer's
        `shared_digest` when the caller already verified it (a scoring pass: the loader matched
        it), else it is computed here. `head`: the bank's head config, of the states' form and
        rank (its storage dtype is what `extract` gives, e.g. int8 heads fitted from a float32
        global head); default: the first state's."""
        if not states:
            raise ValueError("from_states needs at least one head, got none")
        dims = sorted({s.dim for s in states})
        forms = sorted({s.shape_key for s in states}, key=str)
        if len(dims) > 1 or len(forms) > 1:
            raise ValueError(f"all heads of a bank need the same d and form, got d {dims} and "
                             f"(form, rank) {forms}")
        if head is not None and head.shape_key != states[0].shape_key:
            raise ValueError(f"head asks for {head.describe()} heads, the states are "
                             f"{states[0].config.describe()}")
        bank = cls(1, dims[0], dropout=dropout, mode=mode, head=head or states[0].config,
                   shared=shared)
        sha = shared_sha or bank.shared_sha                   # hashed once, not per head
        for i, state in enumerate(states):
            bank._check_shared(i, state, sha)
        for name in bank.names:
            stacked = torch.stack([getattr(s, name).detach() for s in states]).float()
            setattr(bank, name, nn.Parameter(stacked))       # [U, ...]
        return bank

    def extract_dense(self, i: int) -> HeadState:
        """Head i as a dense float32 head: w1 = shared w1 + a @ b (residual), a @ b (low-rank)
        or w1. The residual form's global head (a = b = 0 in training) comes out with w1
        exactly the shared layer, which the users' heads name."""
        self._check_index(i)
        with torch.no_grad():
            if self.head.form == "dense":
                w1 = self.w1[i]
            else:
                w1 = self.a[i] @ self.b[i]
                if self.shared_w1 is not None:   # a @ b = 0: the layer itself, bit for bit
                    w1 = self.shared_w1 + w1 if w1.any() else self.shared_w1
            return HeadState(w1.detach().clone(), self.b1[i].detach().clone(),
                             self.w2[i].detach().clone(), self.b2[i].detach().clone())

    def extract(self, i: int) -> AnyHeadState:
        """A detached copy of head i (stored with the bank's storage dtype when saved)."""
        self._check_index(i)
        fields = {} if self.shared_w1 is None else {"shared": self.shared_sha}
        return self.state_class(**{n: getattr(self, n)[i].detach().clone() for n in self.names},
                                dtype=self.head.dtype, **fields)

    @torch.no_grad()
    def load(self, i: int, state: AnyHeadState) -> None:
        """Overwrite head i with `state` (same d and form)."""
        self._check_index(i)
        if state.dim != self.dim:
            raise ValueError(f"head {i}: bank has d={self.dim}, state has d={state.dim}")
        if state.shape_key != self.head.shape_key:
            raise ValueError(f"head {i}: bank holds {self.head.describe()} heads, state is "
                             f"{state.config.describe()}")
        self._check_shared(i, state)
        for name in self.names:
            getattr(self, name)[i].copy_(getattr(state, name))

    def _check_shared(self, i: int, state: AnyHeadState, sha: str | None = None) -> None:
        if not isinstance(state, ResidualHeadState):
            return
        sha = sha or self.shared_sha
        if state.shared != sha:
            raise ValueError(f"head {i} was fitted on the shared first layer {state.shared[:12]}, "
                             f"this bank's is {str(sha)[:12]}")

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
        if self.head.form != "dense":                                              # [G, L, r]
            pre = torch.bmm(torch.bmm(padded, self.a[heads]), self.b[heads])       # [G, L, d]
            if self.shared_w1 is not None:
                pre = pre + padded @ self.shared_w1                                # [G, L, d]
        else:
            pre = torch.bmm(padded, self.w1[heads])                                # [G, L, d]
        hidden = torch.tanh(pre + self.b1[heads][:, None, :])
        logits = torch.bmm(self.dropout(hidden), self.w2[heads])                   # [G, L, 2]
        logits = logits + self.b2[heads][:, None, :]
        return logits[group, pos]                                                  # [B, 2]

    def _apply_segments(self, xs: Tensor, sorted_heads: Tensor) -> Tensor:
        params = {name: getattr(self, name) for name in self.names}
        if torch.is_grad_enabled():
            # Views from one unbind get their gradients stacked once in backward; indexing the
            # parameter per segment would build a full [U, ...] gradient per segment instead.
            params = {name: p.unbind(0) for name, p in params.items()}
        lowrank, shared = self.head.form != "dense", self.shared_w1
        b1, w2, b2 = params["b1"], params["w2"], params["b2"]
        parts = []
        for head, start, end in segments(sorted_heads):
            rows = self.dropout(xs[start:end])                                   # [n, d]
            if lowrank:
                pre = (rows @ params["a"][head]) @ params["b"][head]             # [n, r] -> [n, d]
                if shared is not None:
                    pre = pre + rows @ shared                                    # [n, d]
            else:
                pre = rows @ params["w1"][head]                                  # [n, d]
            hidden = torch.tanh(pre + b1[head])                                  # [n, d]
            parts.append(self.dropout(hidden) @ w2[head] + b2[head])             # [n, 2]
        return torch.cat(parts)                                                  # [B, 2]
