"""`PairScorer` in this process: a `BatchScorer` behind the pipeline's interface (the quality
benchmark, scripts and tests use it; the Ray Serve Scorer wraps the same core)."""

from __future__ import annotations

from hydralm.pipeline.interfaces import HeadChoice, ModelKind, PairScorer, PairScores, Profile
from hydralm.scoring.batch_scorer import BatchScorer
from hydralm.scoring.types import PairGroup

__all__ = ["LocalPairScorer"]


class LocalPairScorer(BatchScorer, PairScorer):
    """A BatchScorer that is also a PairScorer: concurrent `score` calls of different users share
    forward passes (see BatchScorer), so a pipeline run with asyncio.gather batches across users."""

    async def score(self, kind: ModelKind, user_id: str, firsts: list[str],
                    seconds: list[str], *, profile: Profile | None = None,
                    prefer: HeadChoice = "user") -> PairScores:
        (outcome,) = await self.score_groups([PairGroup.of(kind, user_id, firsts, seconds,
                                                           profile, prefer)])
        if isinstance(outcome, Exception):
            raise outcome
        return outcome
