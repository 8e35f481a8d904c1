"""The fit stage on Ray: fresh heads for new users on the frozen base, sharded by user bucket.

```
fit labels of pending users (history-only pseudo-query pairs)
  -> ray.data.from_blocks(...).map_batches(embed_batch)  the frozen base embeds every pair ONCE
  -> write_parquet(partition_cols=["bucket"])          <work_dir>/fit/<kind>/<base>/<key>/bucket=K
  -> one Ray task per bucket                           fits its users' heads on those vectors
                                                       (every epoch reuses them) and saves them
                                                       with ONE Registry.save_heads
```
A re-run skips users whose head in the registry belongs to the current base, and reuses the
embeddings when they are already complete (a `_SUCCESS` file marks that). A bucket either saved
all its heads (one manifest update) or none, so a killed job leaves a consistent registry.

The refit (`training/refit.py`) runs the same embed and fan-out on labels made from the history
store, with the history version each head records: there a user is done when their head is on the
current base AND records that version (`head_is_current`).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pds
import pyarrow.fs as pafs
import ray
import ray.data
from tqdm import tqdm

from hydralm.artifacts import Registry
from hydralm.console import err
from hydralm.data import user_bucket
from hydralm.data.fs import filesystem_for, join_uri
from hydralm.errors import NotFoundError
from hydralm.jobconfig import JobConfig
from hydralm.model.precision import Precision, ResolvedPrecision, resolve_precision
from hydralm.scoring.bundle import bundle_head_configs
from training.bases import load_kind_base
from training.files import exists, write_json
from training.fit_heads import embeddings_table, fit_user_heads, head_fit_config
from training.label_store import read_labels
from training.ray_env import worker_env
from training.users import UserSplit

__all__ = ["current_base", "embed_batch", "embeddings_key", "fit_kind", "fit_labelled",
           "fitted_users", "head_is_current", "run_fit"]

log = logging.getLogger(__name__)

_SUCCESS = "_SUCCESS"
_BLOCK_ROWS = 4096   # label pairs per Ray Data block handed to the embedding tasks


def fitted_users(registry: Registry, kind: str, base_version: str) -> set[str]:
    """Users whose `kind` head in the registry was fitted on `base_version`."""
    return {u for u, e in registry.iter_head_entries(kind) if e.base_version == base_version}


def head_is_current(entry, base_version: str, history_version: int | None) -> bool:
    """Whether a head entry (or None) already is what a fit would save: on `base_version` and,
    when a history version is wanted, recording it."""
    return entry is not None and entry.base_version == base_version and (
        history_version is None or entry.history_version == history_version)


@functools.lru_cache(maxsize=1)
def _frozen_base(registry_uri: str, kind: str, base_version: str, precision: Precision):
    """The frozen base of `kind`, loaded once per worker process and kept for the next embedding
    task of the same base (Ray reuses a job's worker processes; one base at a time)."""
    encoder, _ = load_kind_base(Registry(registry_uri), kind, version=base_version)
    encoder.set_precision(precision)
    return encoder


def embed_batch(batch: pa.Table, *, registry_uri: str, kind: str, base_version: str,
                batch_size: int, precision: Precision = "auto") -> pa.Table:
    """A Ray Data task's batch of pairs in, (user, label, vector, bucket) out, on the frozen
    base."""
    encoder = _frozen_base(registry_uri, kind, base_version, precision)
    vectors = encoder.embed(batch["first"].to_pylist(), batch["second"].to_pylist(),
                            batch_size=batch_size).numpy()
    out = embeddings_table(batch["user_id"].to_pylist(), batch["label"].to_pylist(), vectors)
    return out.append_column("bucket", batch["bucket"])


def embeddings_key(users: Mapping[str, int | None], precision: ResolvedPrecision) -> str:
    """The name of one embedding run: its users, their history versions (a refit of newer history
    never reuses older vectors) and the encoder's precision (bf16 and fp32 vectors are never
    mixed or reused for one another)."""
    named = sorted(users.items()) if any(v is not None for v in users.values()) else sorted(users)
    return hashlib.sha256(json.dumps([precision, named]).encode()).hexdigest()[:12]


def _embed(cfg: JobConfig, kind: str, version: str, labels: pa.Table,
           users: Mapping[str, int | None]) -> tuple[str, float]:
    """Embed the pending users' pairs once (or reuse a complete earlier run); (uri, seconds).
    'auto' precision is resolved here, once, and handed to every embedding task as the key
    names it."""
    precision = resolve_precision(cfg.fit.precision)
    key = embeddings_key(users, precision)
    uri = join_uri(cfg.paths.work_dir, "fit", kind, version, key)
    if exists(join_uri(uri, _SUCCESS)):
        log.info("reusing the %s embeddings in %s", kind, uri)
        return uri, 0.0
    start = time.monotonic()
    buckets = pa.array([user_bucket(u, cfg.fit.num_buckets)
                        for u in labels["user_id"].to_pylist()], pa.int32())
    table = labels.select(["user_id", "first", "second", "label"]).append_column("bucket",
                                                                                 buckets)
    fs, path = filesystem_for(uri)
    if fs.get_file_info(path).type != pafs.FileType.NotFound:
        fs.delete_dir(path)   # files of an interrupted run: never mixed with this one's
    # Blocks made on the driver: from_arrow would compute their metadata in a 1-CPU task,
    # which never schedules next to a running serving app on a small machine.
    blocks = [table.slice(start, _BLOCK_ROWS) for start in range(0, table.num_rows, _BLOCK_ROWS)]
    ray.data.from_blocks(blocks).map_batches(
        embed_batch, fn_kwargs={"registry_uri": cfg.paths.registry, "kind": kind,
                                "base_version": version, "batch_size": cfg.fit.embed_batch_size,
                                "precision": precision},
        batch_size=cfg.fit.embed_batch_size, batch_format="pyarrow",
        num_cpus=cfg.fit.cpus_per_task, runtime_env=worker_env() or None,
        concurrency=cfg.fit.embed_concurrency,
    ).write_parquet(path, filesystem=fs, partition_cols=["bucket"],
                    ray_remote_args={"num_cpus": cfg.fit.cpus_per_task})
    write_json(join_uri(uri, _SUCCESS), {"users": len(users), "rows": labels.num_rows,
                                         "precision": precision})
    return uri, time.monotonic() - start


@ray.remote
def _fit_bucket(cfg: JobConfig, kind: str, version: str, embeddings_uri: str, bucket: int,
                users: dict[str, int | None], crash: bool) -> dict[str, Any]:
    """Fit one bucket's pending users (user -> history version to record, or None) and save
    their heads in one manifest update. Users a killed earlier attempt already saved are
    skipped."""
    start = time.monotonic()
    registry = Registry(cfg.paths.registry)
    manifest = registry.manifest()
    todo = sorted(u for u, hv in users.items()
                  if not head_is_current(registry.head_entry(kind, u, manifest), version, hv))
    if not todo:     # a retry of a task that saved its heads before it was lost
        return {"bucket": bucket, "fitted": 0, "users": [], "rows": 0,
                "seconds": time.monotonic() - start}
    fs, path = filesystem_for(join_uri(embeddings_uri, f"bucket={bucket}"))
    table = pds.dataset(path, filesystem=fs, format="parquet").to_table(
        filter=pc.field("user_id").isin(todo))
    head = bundle_head_configs(registry, version)[kind]   # the base's head form, not the job's
    residual = head.form == "residual"
    global_head = (registry.load_global_head(kind)        # verified: on the current base
                   if cfg.fit.init == "global" or residual else None)
    heads = fit_user_heads(table, todo, head_fit_config(cfg.fit, cfg.model(kind).dropout),
                           max_users_per_fit=cfg.fit.max_users_per_fit,
                           init=global_head if cfg.fit.init == "global" else None, head=head,
                           shared=global_head.w1 if residual else None)
    if crash:
        raise RuntimeError(f"injected failure in bucket {bucket} before saving its heads")
    if heads:
        history = {u: users[u] for u in heads if users[u] is not None}
        registry.save_heads(kind, heads, version, history_versions=history or None)
    return {"bucket": bucket, "fitted": len(heads), "users": sorted(heads),
            "rows": table.num_rows, "seconds": time.monotonic() - start}


def _fan_out(cfg: JobConfig, kind: str, version: str, embeddings_uri: str,
             buckets: dict[int, dict[str, int | None]], crash_bucket: int | None,
             progress: bool) -> list[dict[str, Any]]:
    """One task per bucket; waits for all of them, then raises the first failure if any."""
    task = _fit_bucket.options(num_cpus=cfg.fit.cpus_per_task, runtime_env=worker_env() or None)
    pending = [task.remote(cfg, kind, version, embeddings_uri, b, users, b == crash_bucket)
               for b, users in sorted(buckets.items())]
    results, errors = [], []
    with tqdm(total=len(pending), desc=f"fit {kind}", unit=" bucket", file=err(),
              disable=not progress) as bar:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            try:
                results.append(ray.get(done[0]))
            except ray.exceptions.RayTaskError as exc:
                errors.append(exc)
            bar.update(1)
            bar.set_postfix(users=sum(r["fitted"] for r in results), failed=len(errors))
    if errors:
        raise errors[0]
    return results


def current_base(cfg: JobConfig) -> str:
    """The registry's current base version; NotFoundError before `hydralm train`."""
    version = Registry(cfg.paths.registry).base_version()
    if version is None:
        raise NotFoundError(f"no base in {cfg.paths.registry}: run `hydralm train` first")
    return version


def fit_labelled(cfg: JobConfig, kind: str, version: str, labels: pa.Table | None,
                 pending: Mapping[str, int | None], *, crash_bucket: int | None = None,
                 progress: bool = True) -> dict[str, Any]:
    """Embed the labels of the `pending` users (user -> history version to record, or None) on
    the frozen base and fit their heads, one task per bucket; the counts."""
    with_data = sorted(set(labels["user_id"].to_pylist()) & set(pending)) \
        if labels is not None else []
    summary: dict[str, Any] = {"fitted": 0, "without_data": len(pending) - len(with_data),
                               "buckets": 0, "rows": 0, "embed_seconds": 0.0, "users": []}
    if with_data:
        users = {u: pending[u] for u in with_data}
        labels = labels.filter(pc.is_in(labels["user_id"], value_set=pa.array(with_data)))
        uri, seconds = _embed(cfg, kind, version, labels, users)
        buckets: dict[int, dict[str, int | None]] = {}
        for user, history_version in users.items():
            buckets.setdefault(user_bucket(user, cfg.fit.num_buckets), {})[user] = history_version
        results = _fan_out(cfg, kind, version, uri, buckets, crash_bucket, progress)
        summary.update(fitted=sum(r["fitted"] for r in results), buckets=len(results),
                       rows=sum(r["rows"] for r in results), embed_seconds=round(seconds, 1),
                       users=sorted(u for r in results for u in r["users"]))
    return summary


def fit_kind(cfg: JobConfig, kind: str, users: Sequence[str], stage: str = "fit", *,
             crash_bucket: int | None = None, progress: bool = True) -> dict[str, Any]:
    """Fit the heads of `users` that have none on the current base, from their `stage` labels
    ("fit": a new user's history labels; "train": a training user's, for `train_heads: dense`,
    training/train_job.py); the counts, `new_users` being how many were asked for."""
    start = time.monotonic()
    version = current_base(cfg)
    done = fitted_users(Registry(cfg.paths.registry), kind, version) & set(users)
    pending = [u for u in users if u not in done]
    labels = read_labels(cfg, kind, stage, users=pending) if pending else None
    summary = {"model": kind, "base_version": version, "new_users": len(users),
               "already_fitted": len(done),
               **fit_labelled(cfg, kind, version, labels, dict.fromkeys(pending),
                              crash_bucket=crash_bucket, progress=progress)}
    del summary["users"]
    summary["seconds"] = round(time.monotonic() - start, 1)
    return summary


def run_fit(cfg: JobConfig, split: UserSplit, kinds: Sequence[str], *,
            crash_bucket: int | None = None, progress: bool = True) -> dict[str, Any]:
    """Fit the new users' heads of each kind; `crash_bucket` is a test hook (that bucket's task
    fails before saving)."""
    return {"registry": cfg.paths.registry,
            "models": [fit_kind(cfg, kind, split.test, crash_bucket=crash_bucket,
                                progress=progress) for kind in kinds]}
