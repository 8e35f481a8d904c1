"""One forward pass over rows of many users: the base once, then each row's own head.

Pure functions over tensors and a base encoder; `BatchScorer` decides what goes into a pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from hydralm.model import AnyHeadState, BaseEncoder, HeadBank, HeadState, ResidualHeadState

__all__ = ["ForwardJob", "distinct_heads", "score_jobs", "temporary_bank"]


@dataclass(frozen=True)
class ForwardJob:
    """Pairs of one caller, all scored with `head` (one user's head or the global head)."""

    firsts: Sequence[str]
    seconds: Sequence[str]
    head: AnyHeadState


def distinct_heads(jobs: Sequence[ForwardJob]) -> tuple[list[AnyHeadState], list[int]]:
    """The distinct heads of the jobs (by identity: every user on the global head shares one slot)
    and, per job, its head's slot."""
    slots: dict[int, int] = {}
    heads: list[AnyHeadState] = []
    job_slots = []
    for job in jobs:
        key = id(job.head)
        if key not in slots:
            slots[key] = len(heads)
            heads.append(job.head)
        job_slots.append(slots[key])
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
    bank = HeadBank.from_states(heads, dropout=0.0, shared=shared).to(device)
    return bank.requires_grad_(False).eval()     # dense: w1 [G, d, d], b1 [G, d], w2 [G, d, 2]


@torch.inference_mode()
def score_jobs(encoder: BaseEncoder, jobs: Sequence[ForwardJob], *, max_pairs: int,
               device: str | torch.device = "cpu") -> list[list[float]]:
    """Scores of every job's pairs: ONE base forward over all the jobs' rows (several only when
    there are more than `max_pairs` rows), then a temporary bank of the jobs' distinct heads applied
    segment by segment (rows sorted by head, one matmul per head: HeadBank's "segment" mode), each
    row through its own job's head."""
    heads, job_slots = distinct_heads(jobs)
    firsts = [f for job in jobs for f in job.firsts]
    seconds = [s for job in jobs for s in job.seconds]
    if not firsts:
        return [[] for _ in jobs]
    # head_idx [B]: row r of job j uses bank slot job_slots[j]
    head_idx = torch.tensor([slot for job, slot in zip(jobs, job_slots, strict=True)
                             for _ in job.firsts], dtype=torch.long, device=device)
    bank = temporary_bank(heads, device)                                # [G] heads of width d
    # the base once over every row (sorted by length and cut into passes of max_pairs inside)
    x = encoder.embed(firsts, seconds, batch_size=max_pairs)           # [B, d]
    logits = bank(x.to(device), head_idx)                              # [B, 2]
    flat = torch.softmax(logits.float(), dim=-1)[:, 1].tolist()         # [B]
    out, offset = [], 0
    for job in jobs:
        out.append(flat[offset:offset + len(job.firsts)])
        offset += len(job.firsts)
    return out
