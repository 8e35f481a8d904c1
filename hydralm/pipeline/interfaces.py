"""The small interfaces the HYDRA inference pipeline is built from, each with real implementations
elsewhere: a pair scorer (in-process `hydralm.model`, or the Ray Serve Scorer deployment), a
history store, and a text generator (`hydralm.generator.GeneratorClient`)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Literal, Protocol

from hydralm.generator.protocol import Samples, SamplingOptions

__all__ = ["Generator", "HeadChoice", "HeadKind", "HistoryStore", "ModelKind", "PairScorer",
           "PairScores", "Profile"]

ModelKind = Literal["reranker", "adapter"]
# which head scored: the user's own, a zero-fit mixture of training users' heads chosen by the
# user's history (hydralm/model/zero_fit.py), or the global head
HeadKind = Literal["user", "zero_fit", "global"]
# what the caller asks for: the user's head when they have one (else zero-fit from `profile`, else
# the global head), or the zero-fit head even for a user who has one (the eval's hydra_zero_fit)
HeadChoice = Literal["user", "zero_fit"]
# a user's history as hashed term counts (hydralm.model.zero_fit.history_profile)
Profile = tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class PairScores:
    """Scores of (first, second) pairs for one user, and which head produced them."""

    scores: list[float]
    head: HeadKind


class PairScorer(ABC):
    """Scores pairs with the shared base and a user's head (for a user without one: a zero-fit
    head from their history `profile`, else the global head)."""

    @abstractmethod
    async def score(self, kind: ModelKind, user_id: str, firsts: list[str],
                    seconds: list[str], *, profile: Profile | None = None,
                    prefer: HeadChoice = "user") -> PairScores:
        """Return one score in [0, 1] per pair (softmax[:, 1] of the head's logits)."""


class HistoryStore(ABC):
    """A user's history (LaMP profile items); appends are durable before they return.

    Backends: `hydralm.history.SqliteHistoryStore` (one machine) and
    `hydralm.history_pg.PostgresHistoryStore` (shared by any number of replicas)."""

    @abstractmethod
    def get(self, user_id: str) -> list[dict]:
        """All items of the user, oldest first; an unknown user has an empty history."""

    @abstractmethod
    def append(self, user_id: str, items: list[dict]) -> int:
        """Append items durably, in order; return the user's new history length.

        Idempotent by item id: an item whose id the user already has, with the same content,
        adds nothing (a re-sent append is a no-op); with other content it is a
        `hydralm.errors.HistoryConflictError` and nothing of the call is stored. Every item needs
        an `id`."""

    @abstractmethod
    def version(self, user_id: str) -> int:
        """The user's history version: 0 for an unknown user, and larger after every append that
        adds an item (never smaller), so `version != recorded` means the history changed."""

    @abstractmethod
    def iter_versions(self, batch_size: int = 1000) -> Iterator[tuple[str, int]]:
        """(user_id, version) of every user with history, in user-id order, read `batch_size`
        users at a time so millions of users stream."""


class Generator(Protocol):
    """What the pipeline needs of the black box (hydralm.generator.GeneratorClient has it)."""

    async def chat(self, messages: list[dict], *, n: int = 1, temperature: float = 0.0,
                   max_tokens: int | None = None, choices: list[str] | None = None) -> list[str]: ...

    async def chat_samples(self, messages: list[dict], *, n: int = 1, temperature: float = 0.0,
                           max_tokens: int | None = None, choices: list[str] | None = None,
                           options: SamplingOptions | None = None,
                           seed: int | None = None) -> Samples:
        """chat() with each sample's finish reason and the token counts (serving's `usage`)."""

    def chat_stream(self, messages: list[dict], *, temperature: float = 0.0,
                    max_tokens: int | None = None, choices: list[str] | None = None,
                    options: SamplingOptions | None = None) -> AsyncIterator[str | Samples]:
        """One answer's text in pieces as the generator writes it, then its Samples."""
