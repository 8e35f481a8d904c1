"""One forward pass over rows of many users: the base once, then each row's own head.

Pure functions over tensors and a base encoder; `BatchScorer` decides what goes into a pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from hydralm.model import AnyHeadState, BaseEncoder, HeadBank, HeadState, ResidualHeadState

__all__ = ["ForwardJob", "MixtureHead", "distinct_heads", "score_jobs", "temporary_bank"]


@dataclass(frozen=True)
class MixtureHead:
    """A zero-fit head (hydralm/model/zero_fit.py): a row's score is the weighted sum of these
    heads' scores (softmax[:, 1]), weights summing to 1."""

    heads: tuple[AnyHeadState, ...]
    weights: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.heads or len(self.heads) != len(self.weights):
            raise ValueError(f"a mixture needs one weight per head, got {len(self.heads)} heads "
                             f"and {len(self.weights)} weights")
        if abs(sum(self.weights) - 1.0) > 1e-4 or min(self.weights) < 0:
            raise ValueError(f"mixture weights must be non-negative and sum to 1, got "
                             f"{self.weights!r}")


@dataclass(frozen=True)
class ForwardJob:
    """Pairs of one caller, all scored with `head` (one user's head, the global head, or a
    mixture of heads)."""

    firsts: Sequence[str]
    seconds: Sequence[str]
    head: AnyHeadState | MixtureHead


def _components(head: AnyHeadState | MixtureHead) -> list[tuple[AnyHeadState, float]]:
    if isinstance(head, MixtureHead):
        return list(zip(head.heads, head.weights, strict=True))
    return [(head, 1.0)]


def distinct_heads(jobs: Sequence[ForwardJob]) -> tuple[list[AnyHeadState], list[list[int]]]:
    """The distinct heads of the jobs (by identity: every user on the global head shares one slot)
    and, per job, its heads' slots (one, or a mixture's components in order)."""
    slots: dict[int, int] = {}
    heads: list[AnyHeadState] = []
    job_slots = []
    for job in jobs:
        mine = []
        for head, _ in _components(job.head):
            key = id(head)
            if key not in slots:
                slots[key] = len(heads)
                heads.append(head)
            mine.append(slots[key])
        job_slots.append(mine)
    return heads, job_slots


def temporary_bank(heads: Sequence[AnyHeadState], device: str | torch.device) -> HeadBank:
    """An eval-mode bank of exactly `heads` (one form), stacked once. Residual heads carry their
    shared first layer (`ResidualHeadState.layer`, attached by the loader) and may come with the
    kind's dense global head, whose w1 is that layer: it joins them as a residual head with
    a = b = 0. A dense head on another w1 is refused (ValueError)."""
    residual = [h for h in heads if isinstance(h, ResidualHeadState)]
    shared = None
    if residual:
        first = residual[0]
        if first.layer is None:
            raise ValueError("a residual head to score needs its shared first layer attached "
                             "(ResidualHeadState.with_layer)")
        shared = first.layer

        def as_residual(head: AnyHeadState) -> AnyHeadState:
            if not isinstance(head, HeadState):
                return head
            same = head.w1 is shared or torch.equal(head.w1, shared)
            return ResidualHeadState.from_global(head, first.rank,
                                                 digest=first.shared if same else None)

        heads = [as_residual(h) for h in heads]
    # the loader attached the layer because its digest is the one the heads name: not hashed again
    bank = HeadBank.from_states(heads, dropout=0.0, shared=shared,
                                shared_sha=residual[0].shared if residual else None).to(device)
    return bank.requires_grad_(False).eval()     # dense: w1 [G, d, d], b1 [G, d], w2 [G, d, 2]


@torch.inference_mode()
def score_jobs(encoder: BaseEncoder, jobs: Sequence[ForwardJob], *, max_pairs: int,
               device: str | torch.device = "cpu") -> list[list[float]]:
    """Scores of every job's pairs: ONE base forward over all the jobs' rows (several only when
    there are more than `max_pairs` rows), then a temporary bank of the jobs' distinct heads applied
    segment by segment (rows sorted by head, one matmul per head: HeadBank's "segment" mode), each
    row through its own job's head. A mixture job's rows go through each of its heads (the base
    still once per row) and their scores are summed with the mixture's weights."""
    heads, job_slots = distinct_heads(jobs)
    firsts = [f for job in jobs for f in job.firsts]
    seconds = [s for job in jobs for s in job.seconds]
    if not firsts:
        return [[] for _ in jobs]
    # one application per (row, head of its job): the row it reads, the slot, the weight
    rows, slots, weights, row = [], [], [], 0
    for job, mine in zip(jobs, job_slots, strict=True):
        mix = [w for _, w in _components(job.head)]
        for r in range(row, row + len(job.firsts)):
            rows += [r] * len(mine)
            slots += mine
            weights += mix
        row += len(job.firsts)
    bank = temporary_bank(heads, device)                                # [G] heads of width d
    # the base once over every row (sorted by length and cut into passes of max_pairs inside)
    x = encoder.embed(firsts, seconds, batch_size=max_pairs).to(device)  # [B, d]
    row_idx = torch.tensor(rows, dtype=torch.long, device=device)        # [A] applications
    head_idx = torch.tensor(slots, dtype=torch.long, device=device)      # [A]
    plain = len(rows) == len(firsts)                                     # no mixture: A == B
    logits = bank(x if plain else x[row_idx], head_idx)                 # [A, 2]
    probs = torch.softmax(logits.float(), dim=-1)[:, 1]                  # [A]
    if not plain:
        probs = torch.zeros(len(firsts), device=device).index_add_(
            0, row_idx, probs * torch.tensor(weights, device=device))    # [B]
    flat = probs.tolist()
    out, offset = [], 0
    for job in jobs:
        out.append(flat[offset:offset + len(job.firsts)])
        offset += len(job.firsts)
    return out
