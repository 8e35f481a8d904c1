"""Runs every method of the comparison on the same test queries, through one `Personalizer`.

Every LLM method is the HYDRA pipeline with another retrieval/selection (`hydralm.pipeline.
METHODS`), so the methods share the generator, the prompts and the answer parsing by construction.
The reference rows come from the same data: `history_knn` from the query's BM25 top-k history,
the oracle from the very candidates HYDRA's adapter chose among.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from tqdm import tqdm

from hydralm.console import err
from hydralm.evaluation.reference import history_knn, oracle_best
from hydralm.pipeline import METHODS, HistoryStore, Personalizer

__all__ = [
    "EvalQuery",
    "HISTORY_KNN",
    "LLM_METHODS",
    "MemoryHistory",
    "QueryOutcome",
    "needs_scorer",
    "oracle_name",
    "run_queries",
]

log = logging.getLogger(__name__)

# The paper's comparison, in table order: three prompt-only methods, then HYDRA's ablations.
LLM_METHODS: tuple[str, ...] = ("zero_shot", "icl_random", "rag_bm25", "hydra_reranker",
                                "hydra_adapter", "hydra", "hydra_zero_fit")
HISTORY_KNN = "history_knn"


def oracle_name(n_candidates: int) -> str:
    """The oracle row's name, e.g. oracle_best_of_8."""
    return f"oracle_best_of_{n_candidates}"


def needs_scorer(method: str) -> bool:
    """Whether a method uses the trained reranker or adapter heads."""
    spec = METHODS[method]
    return spec.retrieval == "rerank" or spec.selection == "adapter"


@dataclass(frozen=True)
class EvalQuery:
    """One held-out query of a test user, with the gold it is scored against."""

    user_id: str
    query_id: str
    input: str
    gold: str


@dataclass
class QueryOutcome:
    """What every method answered to one query: `answers` are parsed (None: unparseable),
    `raw` the generator's text, `candidates` the N samples HYDRA's adapter chose among and
    `adapter_scores` its scores of them (of `run_queries`' selector method: hydra by default),
    `history` that method's `history_answers` (what the guard's "history" rule reads),
    `heads` which head ("user", "zero_fit" or "global") served each model of each HYDRA method,
    `selections` how each adapter method picked ("adapter", or "fallback" when the selection
    guard replaced a collapsed pick)."""

    user_id: str
    query_id: str
    gold: str
    answers: dict[str, str | None] = field(default_factory=dict)
    raw: dict[str, str] = field(default_factory=dict)
    candidates: list[str] = field(default_factory=list)
    adapter_scores: list[float] = field(default_factory=list)
    history: list[str] = field(default_factory=list)   # the selector's history_answers
    heads: dict[str, dict[str, str]] = field(default_factory=dict)
    selections: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"user_id": self.user_id, "query_id": self.query_id, "gold": self.gold,
                "answers": self.answers, "raw": self.raw, "candidates": self.candidates,
                "adapter_scores": self.adapter_scores, "history": self.history,
                "heads": self.heads, "selections": self.selections}


class MemoryHistory(HistoryStore):
    """Test users' histories held in memory: evaluation reads them and never appends."""

    def __init__(self, histories: dict[str, Sequence[dict]]) -> None:
        self._items = {user: list(items) for user, items in histories.items()}

    def get(self, user_id: str) -> list[dict]:
        return list(self._items.get(user_id, ()))

    def append(self, user_id: str, items: list[dict]) -> int:
        self._items.setdefault(user_id, []).extend(items)
        return len(self._items[user_id])

    def version(self, user_id: str) -> int:
        return len(self._items.get(user_id, ()))  # append-only: the length grows with each change

    def iter_versions(self, batch_size: int = 1000) -> Iterator[tuple[str, int]]:
        return iter(sorted((u, len(items)) for u, items in self._items.items() if items))


async def _one_query(personalizer: Personalizer, query: EvalQuery, methods: Sequence[str],
                     knn_k: int, selector: str) -> QueryOutcome:
    task = personalizer.task
    outcome = QueryOutcome(query.user_id, query.query_id, query.gold)
    results = await asyncio.gather(*(personalizer.run(query.user_id, query.input, method)
                                     for method in methods))
    for method, result in zip(methods, results, strict=True):
        outcome.raw[method] = result.answer
        outcome.answers[method] = task.parse(result.answer)
        if result.heads:
            outcome.heads[method] = dict(result.heads)
        if result.selection:
            outcome.selections[method] = result.selection
        if method == selector:
            outcome.candidates = list(result.candidates)
            outcome.adapter_scores = list(result.adapter_scores)
            outcome.history = list(result.history_answers)
    profile = personalizer.history.get(query.user_id)
    outcome.answers[HISTORY_KNN] = history_knn(task, query.input, profile, k=knn_k)
    if selector in methods:
        oracle = oracle_name(personalizer.n_candidates)
        outcome.answers[oracle] = oracle_best(task, outcome.candidates, query.gold)
    return outcome


async def run_queries(personalizer: Personalizer, queries: Sequence[EvalQuery],
                      methods: Sequence[str] = LLM_METHODS, *, knn_k: int = 4,
                      concurrency: int = 16, progress: bool = True, desc: str = "eval",
                      selector: str = "hydra") -> list[QueryOutcome]:
    """Every method's answer to every query (in the order of `queries`), at most `concurrency`
    queries in flight (the generator client bounds its own requests further); the outcomes keep
    the candidates and adapter scores of method `selector`."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method {unknown[0]!r}; choose from {list(LLM_METHODS)}")
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency!r}")
    slots = asyncio.Semaphore(concurrency)
    bar = tqdm(total=len(queries), desc=desc, unit=" query", file=err(), disable=not progress)

    async def bounded(query: EvalQuery) -> QueryOutcome:
        async with slots:
            outcome = await _one_query(personalizer, query, methods, knn_k, selector)
        bar.update(1)
        return outcome

    with bar:
        return list(await asyncio.gather(*(bounded(q) for q in queries)))
