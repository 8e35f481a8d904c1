"""Labelling users: build their calls, ask the black box, apply the rules. No Ray here.

`label_users` is what a label shard runs (training/labels_job.py calls it inside Ray Data); it is
an ordinary coroutine over any `Generator`, so it runs in a test with a fake one. Calls go out
concurrently; the generator client bounds how many are in flight and answers repeats from its
response cache.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from hydralm.data.schema import LampRecord
from hydralm.labels.config import LabelsConfig
from hydralm.labels.pairs import (
    Query,
    RerankFn,
    adapter_call,
    fit_queries,
    reranker_calls,
    train_queries,
)
from hydralm.labels.rules import adapter_labels, reranker_labels
from hydralm.labels.schema import LabelRecord, ModelName, Stage
from hydralm.pipeline.interfaces import Generator

__all__ = [
    "UserData",
    "label_users",
    "user_queries",
    "users_from_dataset",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UserData:
    """One user's history and, for a training user only, their queries with golds."""

    user_id: str
    profile: tuple[dict, ...]
    queries: tuple[LampRecord, ...] = ()


def users_from_dataset(dataset, user_ids: Sequence[str], *, stage: Stage,
                       max_queries: int | None = None) -> list[UserData]:
    """Read users from a `hydralm.data.Dataset`. A fit-stage user is read without queries: their
    queries (and golds) are test data and never reach label building."""
    users = []
    for user_id in user_ids:
        queries: tuple[LampRecord, ...] = ()
        if stage == "train":
            queries = tuple(dataset.queries(user_id)[:max_queries])
        users.append(UserData(user_id, tuple(dataset.profile(user_id)), queries))
    return users


def user_queries(task, user: UserData, *, stage: Stage, cfg: LabelsConfig) -> list[Query]:
    """The label queries of one user: real + pseudo (train) or pseudo only (fit)."""
    if stage == "fit":
        if user.queries:
            raise ValueError(f"fit-stage user {user.user_id!r} was given {len(user.queries)} "
                             "queries: a new user's fit data comes from their history only")
        return fit_queries(task, user.user_id, user.profile,
                           pseudo_per_user=cfg.pseudo_queries_per_user, seed=cfg.seed)
    return train_queries(task, user.user_id, user.profile, user.queries[:cfg.max_queries_per_user],
                         pseudo_per_user=cfg.pseudo_queries_per_user, seed=cfg.seed)


async def _label_reranker(task, generator: Generator, user: UserData, stage: Stage,
                          cfg: LabelsConfig) -> list[LabelRecord]:
    calls = []
    for query in user_queries(task, user, stage=stage, cfg=cfg):
        k = cfg.k_retrieve if query.source == "query" else cfg.similar_per_pseudo
        calls.extend(reranker_calls(task, query, user.profile, k=k))
    tokens = cfg.answer_tokens(task.kind)
    answers = await asyncio.gather(*(
        generator.chat(list(c.messages), n=1, temperature=0.0, max_tokens=tokens,
                       choices=task.choices())
        for c in calls))
    return reranker_labels(task, calls, [a[0] if a else None for a in answers], stage=stage)


async def _label_adapter(task, generator: Generator, user: UserData, stage: Stage,
                         cfg: LabelsConfig, rerank: RerankFn | None) -> list[LabelRecord]:
    calls = [adapter_call(task, q, user.profile, k_retrieve=cfg.k_retrieve,
                          k_prompt=cfg.k_prompt, rerank=rerank)
             for q in user_queries(task, user, stage=stage, cfg=cfg)]
    tokens, sampling = cfg.answer_tokens(task.kind), cfg.sampling()
    samples = await asyncio.gather(*(
        sampling.sample(generator, [{"role": "user", "content": c.prompt}],
                        bare=[{"role": "user", "content": c.query.input}],
                        max_tokens=tokens, choices=task.choices())
        for c in calls))
    best = cfg.adapter_best_candidate_positive
    return [row for call, cands in zip(calls, samples, strict=True)
            for row in adapter_labels(task, call, cands, stage=stage,
                                      best_candidate_positive=best)]


async def label_users(task, generator: Generator, users: Sequence[UserData], *,
                      model: ModelName, stage: Stage, cfg: LabelsConfig,
                      rerank: RerankFn | None = None) -> list[LabelRecord]:
    """Every label record of `users` for one model, users in the given order.

    `rerank` (adapter only) reorders a prompt's retrieved items; None keeps BM25 order.
    """
    if model == "reranker":
        jobs = [_label_reranker(task, generator, u, stage, cfg) for u in users]
    elif model == "adapter":
        jobs = [_label_adapter(task, generator, u, stage, cfg, rerank) for u in users]
    else:
        raise ValueError(f"model must be 'reranker' or 'adapter', got {model!r}")
    per_user = await asyncio.gather(*jobs)
    records = [r for rows in per_user for r in rows]
    log.debug("labelled %d users (%s, %s): %d pairs", len(users), model, stage, len(records))
    return records
