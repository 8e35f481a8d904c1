"""Which black-box calls label which pairs: queries, pseudo-queries and their paired items.

Pure functions of one user's data. Pair texts come from `hydralm.pipeline` (`reranker_pairs`,
`adapter_pairs`) and nowhere else, so the models are trained on exactly what serving feeds them.

- A `Query` is a question with a known answer: a training user's real query and gold, or a
  *pseudo-query*, a history item standing for a query (`task.item_query(item)`, its own
  `task.item_target(item)` the gold). A pseudo-query never retrieves the item it was made from.
- Reranker: a real query is paired with its BM25 top-k history items; a pseudo-query with the k
  items most similar to its item (`most_similar`). Each pair is one one-shot call.
- Adapter: per query, N candidates drawn by the labels' candidate policy from the RAG prompt with
  the top `k_prompt` items (BM25 order, or reordered by a reranker when one is given) and, when
  the policy says so, from the bare query (hydralm/pipeline/candidates.py).

`fit_queries` (new users) takes no queries at all: a new user's fit data is built from their
history alone, never from their test queries or golds.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from hydralm.data.schema import LampRecord
from hydralm.pipeline.pairs import adapter_pairs, reranker_pairs
from hydralm.retrieval import BM25Index, most_similar

__all__ = [
    "AdapterCall",
    "Query",
    "RerankFn",
    "RerankerCall",
    "adapter_call",
    "fit_queries",
    "pseudo_queries",
    "record_queries",
    "reranker_calls",
    "train_queries",
]

# (user id, query input, items) -> one score per item, higher is better (a trained reranker).
RerankFn = Callable[[str, str, Sequence[Mapping]], Sequence[float]]


@dataclass(frozen=True)
class Query:
    """A question whose answer is known. `item_index`: for a pseudo-query, the profile item it
    was made from (excluded from its retrieval); None for a real query."""

    user_id: str
    query_id: str
    source: Literal["query", "pseudo"]
    input: str
    gold: str
    item_index: int | None = None


@dataclass(frozen=True)
class RerankerCall:
    """One one-shot call: the paired item and its answer as the example, then the query."""

    query: Query
    item_id: str
    messages: tuple[dict[str, str], ...]
    first: str
    second: str


@dataclass(frozen=True)
class AdapterCall:
    """One sampling call: N candidates from the RAG prompt built with `item_ids`."""

    query: Query
    item_ids: tuple[str, ...]
    prompt: str
    retrieval: Literal["bm25", "rerank"]

    def pairs(self, task, candidates: Sequence[str]) -> tuple[list[str], list[str]]:
        return adapter_pairs(task, self.query.input, self.prompt, candidates)


def record_queries(records: Sequence[LampRecord]) -> list[Query]:
    """A training user's real queries; each must carry its gold."""
    out = []
    for rec in records:
        if rec.gold is None:
            raise ValueError(f"training query {rec.id!r} of user {rec.user_id!r} has no gold; "
                             "training labels need the outputs file of the training split")
        out.append(Query(rec.user_id, rec.id, "query", rec.input, rec.gold))
    return out


def pseudo_queries(task, user_id: str, profile: Sequence[Mapping], n: int, *,
                   seed: int) -> list[Query]:
    """Up to `n` history items as queries, drawn without replacement, reproducibly per
    (seed, user). The query's long field is cut as prompts cut it, to fit small contexts."""
    if n <= 0 or not profile:
        return []
    rng = random.Random(f"{seed}:{user_id}")
    picked = sorted(rng.sample(range(len(profile)), min(n, len(profile))))
    return [Query(user_id, f"pseudo:{profile[i]['id']}", "pseudo",
                  task.item_query(profile[i], truncate=True), task.item_target(profile[i]), i)
            for i in picked]


def train_queries(task, user_id: str, profile: Sequence[Mapping], records: Sequence[LampRecord],
                  *, pseudo_per_user: int, seed: int) -> list[Query]:
    """A training user's label queries: their real queries, then their pseudo-queries."""
    return [*record_queries(records),
            *pseudo_queries(task, user_id, profile, pseudo_per_user, seed=seed)]


def fit_queries(task, user_id: str, profile: Sequence[Mapping], *, pseudo_per_user: int,
                seed: int) -> list[Query]:
    """A new user's label queries: pseudo-queries from their own history only."""
    return pseudo_queries(task, user_id, profile, pseudo_per_user, seed=seed)


def _item_texts(task, profile: Sequence[Mapping]) -> list[str]:
    return [task.item_text(item) for item in profile]


def reranker_calls(task, query: Query, profile: Sequence[Mapping], *, k: int) -> list[RerankerCall]:
    """The one-shot calls labelling `query`'s pairs with up to `k` history items."""
    if len(profile) < 2 and query.item_index is not None:
        return []  # a pseudo-query needs another item to pair with
    docs = _item_texts(task, profile)
    if query.item_index is None:
        picked = [i for i, _ in BM25Index(docs).top_k(task.query_text(query.input), k)]
    else:
        picked = most_similar(docs, query.item_index, k)
    items = [profile[i] for i in picked]
    firsts, seconds = reranker_pairs(task, query.input, items)
    return [RerankerCall(query=query, item_id=str(item["id"]),
                         messages=tuple(task.one_shot_messages(query.input, item)),
                         first=first, second=second)
            for item, first, second in zip(items, firsts, seconds, strict=True)]


def adapter_call(task, query: Query, profile: Sequence[Mapping], *, k_retrieve: int,
                 k_prompt: int, rerank: RerankFn | None = None) -> AdapterCall:
    """The sampling call for `query`: BM25 top `k_retrieve` of the history (minus a
    pseudo-query's own item), reordered by `rerank` when given, the first `k_prompt` in the
    prompt."""
    pool = [j for j in range(len(profile)) if j != query.item_index]
    top: list[int] = []
    if pool:
        index = BM25Index(_item_texts(task, [profile[j] for j in pool]))
        top = [pool[i] for i, _ in index.top_k(task.query_text(query.input), k_retrieve)]
    if rerank is not None and top:
        scores = list(rerank(query.user_id, query.input, [profile[j] for j in top]))
        if len(scores) != len(top):
            raise ValueError(f"rerank returned {len(scores)} scores for {len(top)} items")
        top = [top[i] for i in sorted(range(len(top)), key=lambda i: (-scores[i], i))]
    items = [profile[j] for j in top[:k_prompt]]
    return AdapterCall(query=query, item_ids=tuple(str(item["id"]) for item in items),
                       prompt=task.rag_prompt(query.input, items),
                       retrieval="rerank" if rerank is not None else "bm25")
