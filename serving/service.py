"""What the routes call: HYDRA's pipeline and its two models for one user, and the user's history.

`HydraService` holds no per-user state (the Scorer holds the heads, the store the histories), so
one instance serves every user of a replica. It speaks in library types (PersonalizeResult,
PairScores) and raises `serving.errors` ApiErrors for what the caller got wrong; the routes
(serving/ingress.py) only translate HTTP to these calls and back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from hydralm.errors import HistoryConflictError
from hydralm.generator import SamplingOptions
from hydralm.pipeline import (
    METHODS,
    CandidateSampling,
    Generator,
    HistoryStore,
    PairScorer,
    PairScores,
    Personalizer,
    PersonalizeResult,
    SelectionGuard,
    adapter_pairs,
    reranker_pairs,
)
from serving.errors import Conflict, InvalidRequest, NotFound

__all__ = ["Answer", "HydraService", "PipelineSettings", "ReadinessCheck", "head_summary"]

log = logging.getLogger(__name__)

# A readiness probe: raises (any error) when its dependency is unreachable.
ReadinessCheck = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class PipelineSettings:
    """The pipeline sizes and the model ids the service answers to."""

    model_name: str = "hydralm"
    method: str = "hydra"
    k_retrieve: int = 10
    k_prompt: int = 4
    sampling: CandidateSampling = field(default_factory=CandidateSampling)   # N candidates
    guard: SelectionGuard = field(default_factory=SelectionGuard)   # collapsed adapter picks


@dataclass(frozen=True)
class Answer:
    """The `n` best answers of a completion (best first), each one's finish reason, and the full
    pipeline result (its token counts cover every candidate)."""

    texts: list[str]
    finish_reasons: list[str]
    method: str
    result: PersonalizeResult


def head_summary(heads: dict[str, str]) -> str:
    """One word for the response: global if any model fell back to the global head, else
    zero_fit if any was served by a zero-fit head (the user has history and no head yet), else
    user."""
    if not heads:
        return "none"
    for head in ("global", "zero_fit"):
        if head in heads.values():
            return head
    return "user"


class HydraService:
    """Personalization, reranking, scoring and history for the users of one task."""

    def __init__(self, *, task, scorer: PairScorer, generator: Generator, history: HistoryStore,
                 settings: PipelineSettings,
                 checks: dict[str, ReadinessCheck] | None = None) -> None:
        self.task, self.scorer, self.generator, self.history = task, scorer, generator, history
        self.settings = settings
        self._checks = dict(checks or {})

    # ---- models -----------------------------------------------------------------------------

    def model_ids(self) -> list[str]:
        """`<model_name>` (the default method) and `<model_name>:<method>` for every method."""
        name = self.settings.model_name
        return [name] + [f"{name}:{m}" for m in METHODS]

    def method_for_model(self, model: str) -> str:
        name = self.settings.model_name
        if model == name:
            return self.settings.method
        prefix, _, method = model.partition(":")
        if prefix == name and method in METHODS:
            return method
        raise NotFound(f"model: unknown model {model!r}; GET /v1/models lists "
                       f"{self.model_ids()}", param="model", code="model_not_found")

    # ---- the pipeline -----------------------------------------------------------------------

    async def personalize(self, user: str, query: str, *, method: str | None = None,
                          n_candidates: int | None = None, max_tokens: int | None = None,
                          temperature: float | None = None,
                          options: SamplingOptions | None = None,
                          seed: int | None = None) -> PersonalizeResult:
        method = method or self.settings.method
        if method not in METHODS:
            raise InvalidRequest(f"method: unknown method {method!r}; choose one of "
                                 f"{sorted(METHODS)}", param="method")
        return await self._personalizer(max_tokens).run(
            user, query, method, n_candidates=n_candidates, temperature=temperature,
            options=options, seed=seed)

    def _personalizer(self, max_tokens: int | None) -> Personalizer:
        return Personalizer(
            self.task, self.scorer, self.generator, self.history,
            k_retrieve=self.settings.k_retrieve, k_prompt=self.settings.k_prompt,
            max_tokens=max_tokens, sampling=self.settings.sampling, guard=self.settings.guard)

    async def complete(self, user: str, model: str, query: str, *, n: int = 1,
                       max_tokens: int | None = None, temperature: float | None = None,
                       options: SamplingOptions | None = None,
                       seed: int | None = None) -> Answer:
        """The OpenAI routes: the `n` best of the candidates by adapter score. `temperature`
        is the single-answer methods' (Personalizer.run); options and seed go to the generator."""
        method = self.check_completion(model, n)
        samples = max(n, self.settings.sampling.n)
        result = await self.personalize(user, query, method=method, n_candidates=samples,
                                        max_tokens=max_tokens, temperature=temperature,
                                        options=options, seed=seed)
        # The pipeline's pick first (the selection guard may overrule the best score), then
        # the others best score first, ties to the earlier sample.
        scores = result.adapter_scores or [0.0] * len(result.candidates)
        order = sorted(range(len(result.candidates)), key=lambda i: (-scores[i], i))
        pick = next((i for i in order if result.candidates[i] == result.answer), None)
        if pick is not None:
            order = [pick] + [i for i in order if i != pick]
        texts = [result.candidates[i] for i in order[:n]] or [result.answer]
        reasons = [result.finish_reasons[i] for i in order[:n]] or ["stop"]
        return Answer(texts=texts, finish_reasons=reasons, method=method, result=result)

    def check_completion(self, model: str, n: int) -> str:
        """The method of `model` (404 naming `model` when unknown); 400 naming `n` when it
        answers with one sample and `n` asks for more."""
        method = self.method_for_model(model)
        if n > 1 and METHODS[method].selection != "adapter":
            raise InvalidRequest(f"n: method {method!r} answers greedily with one sample; "
                                 f"n must be 1, got {n}", param="n")
        return method

    def streams_live(self, model: str, seed: int | None) -> bool:
        """Whether a streamed answer of `model` can come as the generator writes it: methods
        that answer with one sample, unseeded (a seeded call comes from the seed memo)."""
        return METHODS[self.method_for_model(model)].selection != "adapter" and seed is None

    async def complete_stream(self, user: str, model: str, query: str, *,
                              max_tokens: int | None = None, temperature: float | None = None,
                              options: SamplingOptions | None = None
                              ) -> AsyncIterator[str | Answer]:
        """complete() for a method that answers with one sample (streams_live): the answer's
        text in pieces as the generator writes it, then the Answer."""
        method = self.method_for_model(model)
        personalizer = self._personalizer(max_tokens)
        async for piece in personalizer.stream(user, query, method, temperature=temperature,
                                               options=options):
            if isinstance(piece, str):
                yield piece
            else:
                yield Answer(texts=[piece.answer], finish_reasons=piece.finish_reasons,
                             method=method, result=piece)

    # ---- the two models alone ---------------------------------------------------------------

    async def rerank(self, user: str, query: str, items: list[dict] | None = None,
                     item_ids: list[str] | None = None) -> tuple[PairScores, list[str]]:
        """Reranker scores of the query against `items`, or the user's stored items by id."""
        if items is None:
            items = await self._stored_items(user, item_ids or [])
        firsts, seconds = reranker_pairs(self.task, query, items)
        scored = await self.scorer.score("reranker", user, firsts, seconds)
        return scored, [str(i["id"]) for i in items]

    async def score(self, user: str, query: str, prompt: str,
                    candidates: list[str]) -> PairScores:
        return await self.scorer.score(
            "adapter", user, *adapter_pairs(self.task, query, prompt, candidates))

    async def _stored_items(self, user: str, ids: list[str]) -> list[dict]:
        by_id = {str(i.get("id")): i for i in await asyncio.to_thread(self.history.get, user)}
        missing = [(n, i) for n, i in enumerate(ids) if i not in by_id]
        if missing:
            n, item_id = missing[0]
            raise NotFound(f"item_ids.{n}: user {user!r} has no history item {item_id!r}",
                           param=f"item_ids.{n}", code="item_not_found")
        return [by_id[i] for i in ids]

    # ---- history ----------------------------------------------------------------------------

    async def append_history(self, user: str, items: list[dict]) -> int:
        """Append validated items durably; the user's history length after it. Idempotent by
        item id (the store decides, in one transaction): a re-sent append that already landed
        adds nothing and answers again; an id the user has with other content is a 409."""
        try:
            return await asyncio.to_thread(self.history.append, user, items)
        except HistoryConflictError as exc:
            raise Conflict(str(exc), param=f"items.{exc.index}.id",
                           code="duplicate_item") from exc

    # ---- readiness --------------------------------------------------------------------------

    async def readiness(self, timeout_s: float = 5.0) -> dict[str, str]:
        """'ok' or the failure of each dependency (scorer, generator), checked concurrently."""

        async def run(check: ReadinessCheck) -> str:
            try:
                await asyncio.wait_for(check(), timeout=timeout_s)
                return "ok"
            except Exception as exc:  # noqa: BLE001 - a probe reports any failure as not ready
                return f"{type(exc).__name__}: {str(exc)[:200]}"

        names = sorted(self._checks)
        results = await asyncio.gather(*(run(self._checks[n]) for n in names))
        return dict(zip(names, results, strict=True))
