"""Write LampRecords as a Parquet dataset (layout: hydralm.data.parquet_layout), streaming and
atomically.

Streaming: records are consumed one at a time; profile rows are buffered per bucket and flushed as
small part files every `chunk_rows` rows, queries through one ParquetWriter. At the end each bucket
(about 1/num_buckets of the profile rows) is read back, sorted by (user_id, position) and rewritten
as one file, so peak memory is one bucket, not the dataset.

Atomic: everything is written into a staging directory. Locally it is renamed onto the target
(same parent, so the rename is atomic); on S3, where there is no rename, the files are uploaded and
meta.json goes last, and a reader refuses a directory without it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import uuid
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from tqdm import tqdm

from hydralm.data import parquet_layout as layout
from hydralm.data.fs import filesystem_for, is_remote
from hydralm.data.lamp import check_task
from hydralm.data.schema import LampRecord
from hydralm.errors import ArtifactError, DataValidationError

__all__ = ["write_dataset"]

log = logging.getLogger(__name__)

ROW_GROUP_ROWS = 4096  # small row groups: a one-user read skips the rest of its bucket


class _StagedWriter:
    """Accumulates records into `root` (a local staging directory)."""

    def __init__(self, root: Path, num_buckets: int, chunk_rows: int) -> None:
        self.root, self.num_buckets, self.chunk_rows = root, num_buckets, chunk_rows
        self.users: dict[str, list[int]] = {}  # user_id -> [n_items, n_queries, profile digest]
        self.pending: dict[int, list[tuple[str, str, int, str]]] = defaultdict(list)
        self.pending_rows = 0
        self.parts = 0
        self.queries: list[tuple[str, str, str, str | None]] = []
        self.num_queries = self.num_items = 0
        self.with_gold = 0
        self._query_writer = pq.ParquetWriter(root / layout.QUERIES_FILE, layout.QUERY_SCHEMA)

    def close(self) -> None:
        """Release the queries file (idempotent; also after a failure)."""
        self._query_writer.close()

    def add(self, rec: LampRecord, index: int) -> None:
        digest = hash(tuple(item["id"] for item in rec.profile))
        entry = self.users.get(rec.user_id)
        if entry is None:
            self.users[rec.user_id] = [len(rec.profile), 1, digest]
            self._add_profile(rec)
        elif entry[2] != digest:
            raise DataValidationError(
                f"user {rec.user_id!r} already appeared with a different profile; all records "
                f"of one user must carry the same history", record=index, field="profile")
        else:
            entry[1] += 1
        self.queries.append((rec.id, rec.user_id, rec.input, rec.gold))
        self.num_queries += 1
        self.with_gold += rec.gold is not None
        if len(self.queries) >= self.chunk_rows:
            self._flush_queries()

    def _add_profile(self, rec: LampRecord) -> None:
        rows = self.pending[layout.user_bucket(rec.user_id, self.num_buckets)]
        for position, item in enumerate(rec.profile):
            text = json.dumps(item, ensure_ascii=False, separators=(",", ":"))
            rows.append((rec.user_id, item["id"], position, text))
        self.pending_rows += len(rec.profile)
        self.num_items += len(rec.profile)
        if self.pending_rows >= self.chunk_rows:
            self._flush_profile()

    def _flush_queries(self) -> None:
        if self.queries:
            self._query_writer.write_table(_table(self.queries, layout.QUERY_SCHEMA))
            self.queries = []

    def _flush_profile(self) -> None:
        for bucket, rows in self.pending.items():
            if rows:
                directory = self.root / layout.bucket_dir(bucket)
                directory.mkdir(parents=True, exist_ok=True)
                pq.write_table(_table(rows, layout.PROFILE_SCHEMA),
                               directory / f"chunk-{self.parts:05d}.parquet")
        self.parts += 1
        self.pending = defaultdict(list)
        self.pending_rows = 0

    def finish(self, task: str, progress: bool) -> dict[str, Any]:
        """Flush, compact each bucket into one sorted file, write users.parquet; return meta."""
        self._flush_queries()
        self.close()
        self._flush_profile()
        for bucket in tqdm(range(self.num_buckets), desc="sort buckets", unit=" bucket",
                           disable=not progress, leave=False):
            _compact(self.root / layout.bucket_dir(bucket))
        users = sorted(self.users.items())
        pq.write_table(_table([(u, e[0], e[1]) for u, e in users], layout.USER_SCHEMA),
                       self.root / layout.USERS_FILE)
        return {"format": layout.FORMAT, "format_version": layout.FORMAT_VERSION, "task": task,
                "num_buckets": self.num_buckets, "num_users": len(users),
                "num_items": self.num_items, "num_queries": self.num_queries,
                "num_with_gold": self.with_gold}


def _table(rows: list[tuple], schema: pa.Schema) -> pa.Table:
    columns = list(zip(*rows, strict=True)) if rows else [[] for _ in schema]
    return pa.Table.from_arrays([pa.array(c, type=f.type) for c, f in zip(columns, schema, strict=True)],
                                schema=schema)


def _compact(directory: Path) -> None:
    if not directory.is_dir():
        return
    chunks = sorted(directory.glob("chunk-*.parquet"))
    table = ds.dataset([str(c) for c in chunks], schema=layout.PROFILE_SCHEMA,
                       format="parquet").to_table()
    table = table.sort_by([("user_id", "ascending"), ("position", "ascending")])
    pq.write_table(table, directory / "part-0.parquet", row_group_size=ROW_GROUP_ROWS)
    for chunk in chunks:
        chunk.unlink()


def _target_exists(fs: pafs.FileSystem, root: str) -> bool:
    return fs.get_file_info(root).type != pafs.FileType.NotFound


def _publish_local(staging: Path, target: Path, meta: dict, overwrite: bool) -> None:
    (staging / layout.META_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")
    old = None
    if target.exists():
        if not overwrite:
            raise ArtifactError(f"{target} already exists; pass overwrite=True (--overwrite)")
        old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
        os.rename(target, old)
    os.rename(staging, target)
    if old is not None:
        shutil.rmtree(old)


def _publish_remote(staging: Path, fs: pafs.FileSystem, root: str, meta: dict,
                    overwrite: bool) -> None:
    if _target_exists(fs, root):
        if not overwrite:
            raise ArtifactError(f"{root} already exists; pass overwrite=True (--overwrite)")
        meta_path = f"{root}/{layout.META_FILE}"
        if fs.get_file_info(meta_path).type == pafs.FileType.File:
            fs.delete_file(meta_path)  # first: readers see "incomplete", never a mix
        fs.delete_dir_contents(root, missing_dir_ok=True)
    pafs.copy_files(str(staging), root, source_filesystem=pafs.LocalFileSystem(),
                    destination_filesystem=fs)
    with fs.open_output_stream(f"{root}/{layout.META_FILE}") as out:
        out.write(json.dumps(meta, indent=2).encode("utf-8"))


def write_dataset(records: Iterable[LampRecord], uri: str | Path, *, task: str,
                  progress: bool = True, overwrite: bool = False,
                  num_buckets: int = layout.DEFAULT_BUCKETS,
                  chunk_rows: int = 50_000) -> dict[str, Any]:
    """Write `records` (any iterable, consumed once) as a dataset at `uri`; return its meta.

    A user's profile is taken from their first record; later records of the same user must carry
    the same item ids. Nothing appears at `uri` unless the whole write succeeds.
    """
    check_task(task)
    if not 1 <= num_buckets <= 1024:
        raise ValueError(f"num_buckets must be in [1, 1024], got {num_buckets!r}")
    fs, root = filesystem_for(uri)
    if _target_exists(fs, root) and not overwrite:
        raise ArtifactError(f"{uri} already exists; pass overwrite=True (--overwrite)")
    if is_remote(uri):
        staging = Path(tempfile.mkdtemp(prefix="hydralm-dataset-"))
    else:
        Path(root).parent.mkdir(parents=True, exist_ok=True)
        staging = Path(root).with_name(f".{Path(root).name}.tmp-{uuid.uuid4().hex[:8]}")
        staging.mkdir()
    writer = None
    try:
        writer = _StagedWriter(staging, num_buckets, chunk_rows)
        for index, rec in enumerate(tqdm(records, desc=f"write {task}", unit=" rec",
                                         disable=not progress)):
            writer.add(rec, index)
        meta = writer.finish(task, progress)
        if is_remote(uri):
            _publish_remote(staging, fs, root, meta, overwrite)
        else:
            _publish_local(staging, Path(root), meta, overwrite)
    finally:
        if writer is not None:
            writer.close()
        shutil.rmtree(staging, ignore_errors=True)
    log.info("wrote %s dataset to %s: %d users, %d items, %d queries", task, uri,
             meta["num_users"], meta["num_items"], meta["num_queries"])
    return meta
