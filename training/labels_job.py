"""Label generation as a Ray Data pipeline: shards of users -> black-box calls -> label files.

```
ray.data.from_items(pending shards)            one row per shard of any (model, stage) plan:
                                               its users and its output file
  .map_batches(ShardLabeler, batch_size=1,     an actor pool of `labels.concurrent_shards`;
               compute=ActorPoolStrategy(n))   each actor owns one GeneratorClient (bounded
                                               concurrency, retries, the response cache)
  .iter_rows()                                 the driver counts finished shards (tqdm)
```
Each actor labels a whole shard with `hydralm.labels.label_users` and writes its Parquet file
atomically before reporting it. Resumable twice over: a finished shard file is never redone, and
inside an unfinished one every call already answered comes back from the response cache. The
manifest is written once every shard exists.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow.compute as pc
import ray
from tqdm import tqdm

from hydralm.console import err
from hydralm.data import Dataset
from hydralm.generator import GeneratorClient
from hydralm.jobconfig import JobConfig
from hydralm.labels import RerankFn, label_users, labels_to_table, users_from_dataset
from hydralm.tasks import get_task
from training.files import exists, read_parquet, write_parquet
from training.label_store import Shard, plan_shards, write_manifest
from training.ray_env import quiet_ray_data, worker_env
from training.rerank import RerankSpec, load_rerank, resolve_retrieval
from training.users import UserSplit

__all__ = ["LabelPlan", "ShardLabeler", "plan_labels", "run_labels"]

log = logging.getLogger(__name__)

# Ray Data actors mostly wait on HTTP: a small CPU share lets them sit next to the embedded
# vLLM (one CPU) and each other on a 2-core machine.
_ACTOR_CPUS = 0.25


@dataclass(frozen=True)
class LabelPlan:
    """One label run (model x stage): its shards and which of them are still to do."""

    model: str
    stage: str
    shards: tuple[Shard, ...]
    pending: tuple[Shard, ...]
    rerank: RerankSpec | None

    @property
    def retrieval(self) -> str:
        if self.model != "adapter":
            return ""
        return "rerank" if self.rerank is not None else "bm25"


def plan_labels(cfg: JobConfig, split: UserSplit, model: str, stage: str) -> LabelPlan:
    """The shards of one run and the pending ones (cheap: no generator, no Ray)."""
    rerank = resolve_retrieval(cfg, stage) if model == "adapter" else None
    tag = "" if model != "adapter" else (rerank.tag if rerank is not None else "bm25")
    shards = plan_shards(cfg, model, stage, split.users(stage), retrieval=tag)
    pending = tuple(s for s in shards if not exists(s.uri))
    return LabelPlan(model, stage, tuple(shards), pending, rerank)


class ShardLabeler:
    """A Ray Data actor that labels whole shards of any of the job's plans; one generator client
    for its lifetime, a plan's reranker loaded on first use."""

    def __init__(self, cfg: JobConfig, plans: list[LabelPlan], dataset_uri: str,
                 base_url: str) -> None:
        self.cfg, self.plans = cfg, plans
        self.task = get_task(cfg.task)
        self.dataset = Dataset(dataset_uri)
        self.client = GeneratorClient(cfg.generator, base_url=base_url)
        self.reranks: dict[int, RerankFn] = {}

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {key: [] for key in (
            "plan", "name", "rows", "positives", "calls", "cache_hits")}
        for plan_index, name, uri, users_json in zip(batch["plan"], batch["name"], batch["uri"],
                                                     batch["users"], strict=True):
            plan = self.plans[int(plan_index)]
            calls, hits = self.client.stats.calls, self._cache_hits()
            users = users_from_dataset(self.dataset, json.loads(users_json), stage=plan.stage,
                                       max_queries=self.cfg.labels.max_queries_per_user)
            records = asyncio.run(self._label(int(plan_index), plan, users))
            table = labels_to_table(records)
            write_parquet(str(uri), table)
            out["plan"].append(int(plan_index))
            out["name"].append(str(name))
            out["rows"].append(table.num_rows)
            out["positives"].append(int(pc.sum(table["label"]).as_py() or 0))
            out["calls"].append(self.client.stats.calls - calls)
            out["cache_hits"].append(self._cache_hits() - hits)
        return out

    def _rerank(self, index: int, plan: LabelPlan) -> RerankFn | None:
        if plan.rerank is None:
            return None
        if index not in self.reranks:
            self.reranks[index] = load_rerank(plan.rerank, self.task)
        return self.reranks[index]

    async def _label(self, index: int, plan: LabelPlan, users: list) -> list:
        try:
            return await label_users(self.task, self.client, users, model=plan.model,
                                     stage=plan.stage, cfg=self.cfg.labels,
                                     rerank=self._rerank(index, plan))
        finally:
            await self.client.aclose()  # its HTTP pool belongs to this event loop

    def _cache_hits(self) -> int:
        return self.client.cache.hits if self.client.cache is not None else 0


def _shard_counts(shard: Shard) -> dict[str, int]:
    table = read_parquet(shard.uri)
    return {"rows": table.num_rows, "positives": int(pc.sum(table["label"]).as_py() or 0)}


def _label_pending(cfg: JobConfig, plans: Sequence[LabelPlan], dataset_uri: str, base_url: str,
                   progress: bool) -> Iterator[dict[str, Any]]:
    """Label every plan's pending shards in one Ray Data pipeline; yield each finished shard."""
    items = [{"plan": i, "name": s.name, "uri": s.uri, "users": json.dumps(list(s.users))}
             for i, plan in enumerate(plans) for s in plan.pending]
    calls = hits = 0
    # Inside quiet_ray_data: a Dataset keeps a copy of the DataContext it was built under.
    with quiet_ray_data(), tqdm(total=len(items), desc="labels", unit=" shard", file=err(),
                                disable=not progress) as bar:
        labelled = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
            ShardLabeler, fn_constructor_kwargs={"cfg": cfg, "plans": list(plans),
                                                 "dataset_uri": dataset_uri,
                                                 "base_url": base_url},
            batch_size=1, batch_format="numpy", num_cpus=_ACTOR_CPUS,
            runtime_env=worker_env() or None,
            compute=ray.data.ActorPoolStrategy(size=min(cfg.labels.concurrent_shards,
                                                        len(items))))
        for row in labelled.iter_rows():
            calls, hits = calls + int(row["calls"]), hits + int(row["cache_hits"])
            bar.update(1)
            bar.set_postfix(calls=calls, cache_hits=hits)
            yield row


def run_labels(cfg: JobConfig, plans: Sequence[LabelPlan], *, dataset_uri: str,
               base_url: str | None, progress: bool = True) -> list[dict[str, Any]]:
    """Label the plans' pending shards on Ray, write each plan's manifest; a summary per plan."""
    start = time.monotonic()
    pending = sum(len(p.pending) for p in plans)
    counts = [{s.name: _shard_counts(s) for s in p.shards if s not in p.pending} for p in plans]
    stats = [{"generator_calls": 0, "cache_hits": 0} for _ in plans]
    if pending:
        if not base_url:
            raise ValueError(f"{pending} label shards need the generator, but no base URL "
                             "was given")
        for row in _label_pending(cfg, plans, dataset_uri, base_url, progress):
            i = int(row["plan"])
            counts[i][row["name"]] = {"rows": int(row["rows"]),
                                      "positives": int(row["positives"])}
            stats[i]["generator_calls"] += int(row["calls"])
            stats[i]["cache_hits"] += int(row["cache_hits"])
    summaries = []
    for plan, plan_counts, plan_stats in zip(plans, counts, stats, strict=True):
        manifest = write_manifest(cfg, plan.model, plan.stage, plan.shards, plan_counts)
        summaries.append({"model": plan.model, "stage": plan.stage, "retrieval": plan.retrieval,
                          "users": manifest["users"], "shards": len(plan.shards),
                          "shards_done_before": len(plan.shards) - len(plan.pending),
                          "rows": manifest["rows"], "positives": manifest["positives"],
                          **plan_stats})
    log.info("labels done in %.1fs: %s", time.monotonic() - start, summaries)
    return summaries
