"""The refit's labels: users' CURRENT history from the history store -> black-box calls -> files.

```
ray.data.from_items(pending shards)           one row per shard: a model, a group of users with
                                              the history version each will record, its file
  .map_batches(HistoryLabeler, batch_size=1)  each actor opens the history store and one
                                              GeneratorClient; reads each user's items, labels
                                              them as a new user's (pseudo-queries only) and
                                              writes the shard atomically
```
A shard's file name is keyed by the label settings and its (user, version) pairs, so a re-run of
the same refit (a killed job) finds its finished shards; inside an unfinished one every call
answered before comes back from the generator's response cache. Only the store's items are read:
never the job's queries or golds, as for any new user.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray
import ray.data
from tqdm import tqdm

from hydralm.data.fs import join_uri
from hydralm.generator import GeneratorClient
from hydralm.history import SqliteHistoryStore
from hydralm.jobconfig import JobConfig, RefitConfig
from hydralm.labels import LABEL_SCHEMA, RerankFn, UserData, label_users, labels_to_table
from hydralm.pipeline.interfaces import HistoryStore
from hydralm.settings import env_str, home_dir
from hydralm.tasks import get_task
from training.files import exists, read_parquet, write_parquet
from training.label_store import settings_key
from training.ray_env import quiet_ray_data, worker_env
from training.rerank import RerankSpec, load_rerank

__all__ = ["HistoryLabeler", "RefitShard", "label_refit", "open_history_store", "pending_shards",
           "plan_shards"]

log = logging.getLogger(__name__)

_ACTOR_CPUS = 0.25   # actors mostly wait on HTTP (as the label job's)
# Where the PostgreSQL store is: forwarded to the actors with the S3 settings (worker_env).
_HISTORY_ENV = ("HYDRALM_HISTORY_DSN", "HYDRALM_HISTORY_DSN_FILE")


def _actor_env() -> dict[str, dict[str, str]] | None:
    env = dict(worker_env().get("env_vars", {}))
    env.update({name: env_str(name) for name in _HISTORY_ENV if env_str(name)})
    return {"env_vars": env} if env else None


def open_history_store(refit: RefitConfig) -> HistoryStore:
    """The history store serving appends to, as `refit` names it."""
    if refit.history_backend == "postgres":
        from hydralm.history_pg import PostgresHistoryStore  # psycopg only where it is used

        return PostgresHistoryStore()   # HYDRALM_HISTORY_DSN(_FILE) or libpq's PG* variables
    return SqliteHistoryStore(refit.history_path or home_dir() / "serving" / "history.db")


@dataclass(frozen=True)
class RefitShard:
    """A group of one model's users labelled together: (user, version) pairs and their file."""

    kind: str
    uri: str
    users: tuple[tuple[str, int], ...]


def plan_shards(cfg: JobConfig, kind: str, pending: Mapping[str, int],
                rerank: RerankSpec | None) -> list[RefitShard]:
    """Consecutive groups of `labels.users_per_shard` users, named by everything that decides
    their rows (settings, users and the versions their items are read at)."""
    tag = "" if kind != "adapter" else (rerank.tag if rerank is not None else "bm25")
    settings = settings_key(cfg, kind, "fit", tag)
    ordered = sorted(pending.items())
    size = cfg.labels.users_per_shard
    shards = []
    for start in range(0, len(ordered), size):
        group = tuple(ordered[start:start + size])
        digest = hashlib.sha256(json.dumps({**settings, "users": group}, sort_keys=True)
                                .encode()).hexdigest()[:16]
        shards.append(RefitShard(kind, join_uri(cfg.paths.work_dir, "refit", "labels", kind,
                                                f"{digest}.parquet"), group))
    return shards


class HistoryLabeler:
    """A Ray Data actor labelling whole refit shards from the history store."""

    def __init__(self, cfg: JobConfig, reranks: dict[str, RerankSpec | None],
                 base_url: str) -> None:
        self.cfg, self.specs = cfg, reranks
        self.task = get_task(cfg.task)
        self.store = open_history_store(cfg.refit)
        self.client = GeneratorClient(cfg.generator, base_url=base_url)
        self.reranks: dict[str, RerankFn | None] = {}

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {"uri": [], "rows": [], "calls": []}
        for kind, uri, users_json in zip(batch["kind"], batch["uri"], batch["users"],
                                         strict=True):
            calls = self.client.stats.calls
            users = [UserData(user, tuple(self.store.get(user)))
                     for user, _ in json.loads(users_json)]
            records = asyncio.run(self._label(str(kind), users))
            table = labels_to_table(records)
            write_parquet(str(uri), table)
            out["uri"].append(str(uri))
            out["rows"].append(table.num_rows)
            out["calls"].append(self.client.stats.calls - calls)
        return out

    def _rerank(self, kind: str) -> RerankFn | None:
        spec = self.specs.get(kind)
        if spec is not None and kind not in self.reranks:
            self.reranks[kind] = load_rerank(spec, self.task)
        return self.reranks.get(kind)

    async def _label(self, kind: str, users: list[UserData]) -> list:
        try:
            return await label_users(self.task, self.client, users, model=kind, stage="fit",
                                     cfg=self.cfg.labels, rerank=self._rerank(kind))
        finally:
            await self.client.aclose()   # its HTTP pool belongs to this event loop


def _run_pending(cfg: JobConfig, shards: Sequence[RefitShard], reranks: dict[str, RerankSpec |
                 None], base_url: str, progress: bool) -> int:
    """Label the shards in one Ray Data pipeline; the generator calls made."""
    items = [{"kind": s.kind, "uri": s.uri, "users": json.dumps(list(s.users))} for s in shards]
    calls = 0
    with quiet_ray_data(), tqdm(total=len(items), desc="refit labels", unit=" shard",
                                disable=not progress) as bar:
        labelled = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
            HistoryLabeler, fn_constructor_kwargs={"cfg": cfg, "reranks": reranks,
                                                   "base_url": base_url},
            batch_size=1, batch_format="numpy", num_cpus=_ACTOR_CPUS,
            runtime_env=_actor_env(),
            compute=ray.data.ActorPoolStrategy(size=min(cfg.labels.concurrent_shards,
                                                        len(items))))
        for row in labelled.iter_rows():
            calls += int(row["calls"])
            bar.update(1)
            bar.set_postfix(calls=calls)
    return calls


def label_refit(cfg: JobConfig, shards: Sequence[RefitShard], reranks: dict[str, RerankSpec |
                None], *, base_url: str | None, progress: bool = True) -> dict[str, Any]:
    """Label the shards not yet written; {"labels": kind -> table, "calls", "shards_done_before"}."""
    todo = [s for s in shards if not exists(s.uri)]
    calls = 0
    if todo:
        if not base_url:
            raise ValueError(f"{len(todo)} refit label shards need the generator, but no base "
                             "URL was given")
        calls = _run_pending(cfg, todo, reranks, base_url, progress)
    tables: dict[str, list[pa.Table]] = {}
    for shard in shards:
        table = read_parquet(shard.uri).select(LABEL_SCHEMA.names).cast(LABEL_SCHEMA)
        tables.setdefault(shard.kind, []).append(table)
    labels = {kind: pa.concat_tables(parts) for kind, parts in tables.items()}
    positives = {kind: int(pc.sum(t["label"]).as_py() or 0) for kind, t in labels.items()}
    return {"labels": labels, "calls": calls, "positives": positives,
            "shards_done_before": len(shards) - len(todo)}


def pending_shards(shards: Sequence[RefitShard]) -> int:
    """How many shards still need the generator (checked before one is started)."""
    return sum(not exists(s.uri) for s in shards)
