"""What the batch scorer takes and gives, and the stable user -> bucket map used for routing."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from hydralm.pipeline.interfaces import HeadChoice, HeadKind, ModelKind, Profile

__all__ = ["MODEL_KINDS", "PairGroup", "RowScore", "ScoreRow", "user_bucket"]

MODEL_KINDS: tuple[ModelKind, ...] = ("reranker", "adapter")


@dataclass(frozen=True)
class ScoreRow:
    """One (first, second) pair to score with `user_id`'s head of model `kind`."""

    kind: ModelKind
    user_id: str
    first: str
    second: str


@dataclass(frozen=True)
class RowScore:
    """softmax[:, 1] of the head's logits for one row, and which head produced it."""

    score: float
    head: HeadKind


@dataclass(frozen=True)
class PairGroup:
    """One caller's pairs: all for one user and one model kind (a /v1/rerank or /v1/score call);
    `profile` and `prefer` as in `PairScorer.score`."""

    kind: ModelKind
    user_id: str
    firsts: tuple[str, ...]
    seconds: tuple[str, ...]
    profile: Profile | None = None
    prefer: HeadChoice = "user"

    def __post_init__(self) -> None:
        if self.kind not in MODEL_KINDS:
            raise ValueError(f"kind must be one of {list(MODEL_KINDS)}, got {self.kind!r}")
        if not isinstance(self.user_id, str) or not self.user_id:
            raise ValueError(f"user_id must be a non-empty string, got {self.user_id!r}")
        if len(self.firsts) != len(self.seconds):
            raise ValueError(f"firsts and seconds must have the same length, got "
                             f"{len(self.firsts)} and {len(self.seconds)}")
        if self.prefer not in ("user", "zero_fit"):
            raise ValueError(f"prefer must be 'user' or 'zero_fit', got {self.prefer!r}")

    @classmethod
    def of(cls, kind: ModelKind, user_id: str, firsts: list[str] | tuple[str, ...],
           seconds: list[str] | tuple[str, ...], profile: Profile | list | None = None,
           prefer: HeadChoice = "user") -> PairGroup:
        return cls(kind, user_id, tuple(firsts), tuple(seconds),
                   tuple(tuple(p) for p in profile) if profile else None, prefer)

    def __len__(self) -> int:
        return len(self.firsts)

    def split(self, size: int) -> list[PairGroup]:
        """Consecutive groups of at most `size` pairs (one group, itself, when it fits)."""
        if size < 1:
            raise ValueError(f"size must be at least 1, got {size!r}")
        if len(self) <= size:
            return [self]
        return [PairGroup(self.kind, self.user_id, self.firsts[i:i + size],
                          self.seconds[i:i + size], self.profile, self.prefer)
                for i in range(0, len(self), size)]


def user_bucket(user_id: str, num_buckets: int) -> str:
    """The routing bucket of a user: a stable hash (the same in every process and run, unlike
    `hash()`) modulo `num_buckets`, as a string usable as Serve's multiplexed model id."""
    if num_buckets < 1:
        raise ValueError(f"num_buckets must be at least 1, got {num_buckets!r}")
    digest = hashlib.blake2b(user_id.encode("utf-8"), digest_size=8).digest()
    return f"b{int.from_bytes(digest, 'big') % num_buckets}"
