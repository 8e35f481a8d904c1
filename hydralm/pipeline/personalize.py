"""The HYDRA inference pipeline for one query, and the prompt-only baselines it generalizes.

retrieve (BM25 top-k of the user's own history) -> rerank (the user's reranker head keeps the best
`k_prompt`) -> prompt (the task's RAG prompt) -> generate (N candidates, drawn by the candidate
policy: from this prompt, and from the bare query when the policy says so) -> select (the user's
adapter head scores prompt + candidate, the best wins). Each baseline of the paper is this pipeline with a
different retrieval and selection: see METHODS.

Every scorer call carries the user's history as hashed term counts (`history_profile`): a user
without a fitted head is then scored by a zero-fit head from that history (hydralm/model/zero_fit.py)
instead of the global head; `hydra_zero_fit` asks for the zero-fit head even when the user has
their own (what the quality benchmark compares).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal

from hydralm.generator.protocol import Samples, SamplingOptions
from hydralm.model.zero_fit import history_profile
from hydralm.pipeline.candidates import CandidateSampling
from hydralm.pipeline.interfaces import Generator, HeadChoice, HistoryStore, PairScorer, Profile
from hydralm.pipeline.pairs import adapter_pairs, reranker_pairs
from hydralm.pipeline.selection import SelectionGuard, select_candidate
from hydralm.retrieval import bm25_top_k

__all__ = ["METHODS", "MethodSpec", "PersonalizeResult", "Personalizer"]

log = logging.getLogger(__name__)

Retrieval = Literal["none", "random", "bm25", "rerank"]
Selection = Literal["greedy", "adapter"]


@dataclass(frozen=True)
class MethodSpec:
    """How one method builds its prompt and picks its answer."""

    retrieval: Retrieval
    selection: Selection
    heads: HeadChoice = "user"


METHODS: dict[str, MethodSpec] = {
    "zero_shot": MethodSpec("none", "greedy"),
    "icl_random": MethodSpec("random", "greedy"),
    "rag_bm25": MethodSpec("bm25", "greedy"),
    "hydra_reranker": MethodSpec("rerank", "greedy"),
    "hydra_adapter": MethodSpec("none", "adapter"),
    "hydra": MethodSpec("rerank", "adapter"),
    # HYDRA with zero-fit heads: no fitted head, the training users' heads mixed by history
    "hydra_zero_fit": MethodSpec("rerank", "adapter", heads="zero_fit"),
}


@dataclass
class PersonalizeResult:
    """The answer and everything that led to it (served by /v1/personalize)."""

    answer: str
    prompt: str
    retrieved_ids: list[str] = field(default_factory=list)
    rerank_scores: list[float] = field(default_factory=list)
    prompt_item_ids: list[str] = field(default_factory=list)
    # the user's own answers (targets) of the history items most like the query (the prompt's;
    # BM25's top k_prompt where the prompt holds none): what the guard's "history" rule compares
    # candidates with; empty without history or where the task's items carry none (LaMP-1)
    history_answers: list[str] = field(default_factory=list)
    candidates: list[str] = field(default_factory=list)
    adapter_scores: list[float] = field(default_factory=list)
    heads: dict[str, str] = field(default_factory=dict)
    timings_ms: dict[str, float] = field(default_factory=dict)
    finish_reasons: list[str] = field(default_factory=list)   # one per candidate
    selection: str = ""          # "adapter", or "fallback" when the guard replaced its pick
    prompt_tokens: int = 0       # the generator's counts, summed over this query's calls
    completion_tokens: int = 0   # every candidate's tokens, not only the answer's


class Personalizer:
    """Runs one method for one user's query. Holds no per-user state: the scorer and the history
    store do, so one instance serves every user."""

    def __init__(self, task, scorer: PairScorer | None, generator: Generator,
                 history: HistoryStore, *, k_retrieve: int = 10, k_prompt: int = 4,
                 n_candidates: int = 8, max_tokens: int | None = None, seed: int = 0,
                 sampling: CandidateSampling | None = None,
                 guard: SelectionGuard | None = None) -> None:
        if k_prompt > k_retrieve:
            raise ValueError(f"k_prompt ({k_prompt}) must not exceed k_retrieve ({k_retrieve})")
        self.task, self.scorer, self.generator, self.history = task, scorer, generator, history
        self.k_retrieve, self.k_prompt = k_retrieve, k_prompt
        # the adapter's candidates: drawn as its training labels' were (LabelsConfig.sampling());
        # `n_candidates` alone means the paper's N samples at temperature 1
        self.sampling = sampling or CandidateSampling(n=n_candidates)
        self.n_candidates = self.sampling.n
        self.max_tokens = max_tokens or (64 if task.kind == "generation" else 16)
        self.seed = seed
        # when the adapter's scores are too close to call, a documented rule picks (off: 0)
        self.guard = guard or SelectionGuard()

    async def run(self, user_id: str, query_input: str, method: str = "hydra",
                  *, n_candidates: int | None = None, temperature: float | None = None,
                  options: SamplingOptions | None = None,
                  seed: int | None = None) -> PersonalizeResult:
        """The answer for one query. `temperature` (default 0: greedy) is the one sample's of
        the methods that answer with one; the adapter's candidates keep the sampling policy's
        temperatures. `options` (stop, top_p, penalties) and `seed` go to every generator call."""
        spec = _method(method)
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        prompt, items, retrieved_ids, rerank_scores, heads, profile, answers = await self._prompt(
            spec, user_id, query_input, timings)
        t = time.perf_counter()
        messages = [{"role": "user", "content": prompt}]
        if spec.selection == "adapter":
            samples = await self.sampling.draw(
                self.generator, messages, bare=[{"role": "user", "content": query_input}],
                n=n_candidates or self.n_candidates,
                max_tokens=self.max_tokens, choices=self.task.choices(), options=options,
                seed=seed)
        else:
            samples = await self.generator.chat_samples(
                messages, n=1, temperature=temperature or 0.0, max_tokens=self.max_tokens,
                choices=self.task.choices(), options=options, seed=seed)
        timings["generate_ms"] = _ms(t)
        candidates = samples.texts
        adapter_scores: list[float] = []
        best, how = 0, ""
        if spec.selection == "adapter" and len(candidates) > 1:
            t = time.perf_counter()
            scored = await self._require_scorer().score(
                "adapter", user_id, *adapter_pairs(self.task, query_input, prompt, candidates),
                profile=profile, prefer=spec.heads)
            adapter_scores, heads["adapter"] = scored.scores, scored.head
            parse = self.task.parse if self.task.labels else None
            picked = select_candidate(candidates, adapter_scores,
                                      self.guard.for_head(scored.head), parse=parse,
                                      history=answers)
            best, how = picked.index, picked.how
            timings["adapter_ms"] = _ms(t)
        timings["total_ms"] = _ms(t0)
        return PersonalizeResult(
            answer=candidates[best] if candidates else "", prompt=prompt,
            retrieved_ids=retrieved_ids, rerank_scores=rerank_scores,
            prompt_item_ids=[str(i.get("id", "")) for i in items], history_answers=answers,
            candidates=candidates, adapter_scores=adapter_scores, heads=heads, timings_ms=timings,
            selection=how, finish_reasons=samples.finish_reasons,
            prompt_tokens=samples.prompt_tokens,
            completion_tokens=samples.completion_tokens)

    async def stream(self, user_id: str, query_input: str, method: str, *,
                     temperature: float | None = None,
                     options: SamplingOptions | None = None
                     ) -> AsyncIterator[str | PersonalizeResult]:
        """run() for a method that answers with one sample: the answer's text in pieces as the
        generator writes them, then the PersonalizeResult. Adapter methods cannot stream (their
        answer is chosen among complete candidates): ValueError."""
        spec = _method(method)
        if spec.selection == "adapter":
            raise ValueError(f"method {method!r} chooses among candidates; it cannot stream")
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        prompt, items, retrieved_ids, rerank_scores, heads, _, _ = await self._prompt(
            spec, user_id, query_input, timings)
        t = time.perf_counter()
        samples: Samples | None = None
        async for piece in self.generator.chat_stream(
                [{"role": "user", "content": prompt}], temperature=temperature or 0.0,
                max_tokens=self.max_tokens, choices=self.task.choices(), options=options):
            if isinstance(piece, str):
                yield piece
            else:
                samples = piece
        assert samples is not None, "a generator stream ends with its Samples"
        timings["generate_ms"] = _ms(t)
        timings["total_ms"] = _ms(t0)
        yield PersonalizeResult(
            answer=samples.texts[0], prompt=prompt, retrieved_ids=retrieved_ids,
            rerank_scores=rerank_scores, prompt_item_ids=[str(i.get("id", "")) for i in items],
            candidates=samples.texts, heads=heads, timings_ms=timings,
            finish_reasons=samples.finish_reasons, prompt_tokens=samples.prompt_tokens,
            completion_tokens=samples.completion_tokens)

    async def _prompt(self, spec: MethodSpec, user_id: str, query_input: str,
                      timings: dict[str, float]):
        """(prompt, items in it, retrieved ids, rerank scores, heads, the history's profile for
        the scorer, the user's answers of the history items most like the query) of one query."""
        # in a thread: a database read (PostgreSQL, possibly waiting out an outage) must not
        # block the event loop every other request of this replica runs on
        history = await asyncio.to_thread(self.history.get, user_id)
        profile = (history_profile(self.task.item_text(item) for item in history)
                   if history and (spec.retrieval == "rerank" or spec.selection == "adapter")
                   else None)
        items, retrieved_ids, rerank_scores, heads = await self._select_items(
            spec, user_id, query_input, history, profile, timings)
        prompt = self.task.rag_prompt(query_input, items) if items else query_input
        answers = (self._history_answers(query_input, history, items)
                   if spec.selection == "adapter" else [])
        return prompt, items, retrieved_ids, rerank_scores, heads, profile, answers

    def _history_answers(self, query_input: str, history: list[dict],
                         items: list[dict]) -> list[str]:
        """The targets of the prompt's items, or of BM25's top k_prompt of the history where the
        prompt holds none (hydra_adapter); [] where the task's items carry no target."""
        if self.task.target_field is None or not history:
            return []
        if not items:
            docs = [self.task.item_text(item) for item in history]
            items = [history[i] for i in bm25_top_k(self.task.query_text(query_input), docs,
                                                     k=max(1, self.k_prompt))]
        return [self.task.item_target(item) for item in items]

    async def _select_items(self, spec: MethodSpec, user_id: str, query_input: str,
                            profile: list[dict], terms: Profile | None,
                            timings: dict[str, float]):
        heads: dict[str, str] = {}
        if spec.retrieval == "none" or not profile:
            return [], [], [], heads
        if spec.retrieval == "random":
            rng = random.Random(f"{self.seed}:{user_id}:{query_input}")
            picked = rng.sample(profile, min(self.k_prompt, len(profile)))
            return picked, [str(i.get("id", "")) for i in picked], [], heads
        t = time.perf_counter()
        docs = [self.task.item_text(item) for item in profile]
        top = bm25_top_k(self.task.query_text(query_input), docs, k=self.k_retrieve)
        retrieved = [profile[i] for i in top]
        timings["retrieve_ms"] = _ms(t)
        ids = [str(i.get("id", "")) for i in retrieved]
        if spec.retrieval == "bm25":
            return retrieved[: self.k_prompt], ids, [], heads
        t = time.perf_counter()
        scored = await self._require_scorer().score(
            "reranker", user_id, *reranker_pairs(self.task, query_input, retrieved),
            profile=terms, prefer=spec.heads)
        heads["reranker"] = scored.head
        order = sorted(range(len(retrieved)), key=lambda i: (-scored.scores[i], i))
        timings["rerank_ms"] = _ms(t)
        return [retrieved[i] for i in order[: self.k_prompt]], ids, scored.scores, heads

    def _require_scorer(self) -> PairScorer:
        if self.scorer is None:
            raise ValueError("this method needs a scorer (reranker/adapter heads); none was given")
        return self.scorer


def _method(name: str) -> MethodSpec:
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; choose one of {sorted(METHODS)}") from None


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000.0, 3)
