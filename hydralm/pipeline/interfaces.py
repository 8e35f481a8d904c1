"""The small interfaces the HYDRA inference pipeline is built from, each with real implementations
elsewhere: a pair scorer (in-process `hydralm.model`, or the Ray Serve Scorer deployment), a
history store, and a text generator (`hydralm.generator.GeneratorClient`)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Literal, Protocol

__all__ = ["Generator", "HistoryStore", "ModelKind", "PairScorer", "PairScores"]

ModelKind = Literal["reranker", "adapter"]


@dataclass(frozen=True)
class PairScores:
    """Scores of (first, second) pairs for one user, and which head produced them."""

    scores: list[float]
    head: Literal["user", "global"]


class PairScorer(ABC):
    """Scores pairs with the shared base and a user's head (the global head for unseen users)."""

    @abstractmethod
    async def score(self, kind: ModelKind, user_id: str, firsts: list[str],
                    seconds: list[str]) -> PairScores:
        """Return one score in [0, 1] per pair (softmax[:, 1] of the head's logits)."""


class HistoryStore(ABC):
    """A user's history (LaMP profile items); appends are durable before they return."""

    @abstractmethod
    def get(self, user_id: str) -> list[dict]:
        """All items of the user, oldest first; an unknown user has an empty history."""

    @abstractmethod
    def append(self, user_id: str, items: list[dict]) -> int:
        """Append items durably; return the user's new history length."""


class Generator(Protocol):
    """What the pipeline needs of the black box (hydralm.generator.GeneratorClient has it)."""

    async def chat(self, messages: list[dict], *, n: int = 1, temperature: float = 0.0,
                   max_tokens: int | None = None, choices: list[str] | None = None) -> list[str]: ...
