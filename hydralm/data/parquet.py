"""LaMP records as a Parquet dataset: `write_dataset` (streaming, atomic) and `Dataset` to read it.

Layout in hydralm.data.parquet_layout. Reading choices:
- `queries()` returns records *without* their profiles (profile=()): listing queries stays cheap,
  and a profile is read only when asked for, with `profile(user_id)`;
- `profile(user_id)` lists and reads only that user's bucket directory, filtered on user_id (row
  groups of other users are skipped by their statistics);
- `records()` yields full records bucket by bucket (one bucket in memory at a time), so its order
  is by bucket, then user_id, then the queries' input order, not the input order overall.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from functools import cached_property
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from hydralm.data import parquet_layout as layout
from hydralm.data.fs import filesystem_for
from hydralm.data.parquet_write import write_dataset
from hydralm.data.schema import LampRecord
from hydralm.data.summary import spread
from hydralm.errors import DataValidationError, NotFoundError

__all__ = ["Dataset", "write_dataset"]


class Dataset:
    """A dataset written by `write_dataset`, local or s3://.

    `filesystem` overrides the one derived from `uri` (then `uri` is the path on it); tests use it
    to watch which files a read opens.
    """

    def __init__(self, uri: str | Path, *, filesystem: pafs.FileSystem | None = None) -> None:
        self.uri = str(uri)
        if filesystem is None:
            self._fs, self._root = filesystem_for(uri)
        else:
            self._fs, self._root = filesystem, self.uri.rstrip("/")
        self.meta = self._read_meta()
        self.task: str = self.meta["task"]
        self.num_buckets: int = self.meta["num_buckets"]

    def __repr__(self) -> str:
        return f"Dataset({self.uri!r}, task={self.task!r}, users={self.meta['num_users']})"

    def _path(self, *parts: str) -> str:
        return "/".join([self._root, *parts])

    def _read_meta(self) -> dict[str, Any]:
        path = self._path(layout.META_FILE)
        if self._fs.get_file_info(path).type != pafs.FileType.File:
            raise NotFoundError(f"no dataset at {self.uri}: {layout.META_FILE} is missing (not a "
                                f"dataset, or a write that did not finish)")
        with self._fs.open_input_stream(path) as f:
            meta = json.loads(f.read().decode("utf-8"))
        if meta.get("format") != layout.FORMAT or meta.get("format_version") != layout.FORMAT_VERSION:
            raise DataValidationError(
                f"unsupported dataset format {meta.get('format')!r} version "
                f"{meta.get('format_version')!r}; this hydralm reads {layout.FORMAT!r} version "
                f"{layout.FORMAT_VERSION}", path=path)
        return meta

    def _read_table(self, name: str) -> pa.Table:
        return pq.read_table(self._path(name), filesystem=self._fs)

    @cached_property
    def _users(self) -> dict[str, tuple[int, int]]:
        table = self._read_table(layout.USERS_FILE).to_pydict()
        return {u: (n_items, n_queries) for u, n_items, n_queries
                in zip(table["user_id"], table["n_items"], table["n_queries"], strict=True)}

    @cached_property
    def _queries(self) -> list[LampRecord]:
        table = self._read_table(layout.QUERIES_FILE).to_pydict()
        return [LampRecord(id=i, user_id=u, input=text, gold=g) for i, u, text, g
                in zip(table["id"], table["user_id"], table["input"], table["gold"], strict=True)]

    @cached_property
    def _queries_by_user(self) -> dict[str, list[LampRecord]]:
        by_user: dict[str, list[LampRecord]] = {}
        for q in self._queries:
            by_user.setdefault(q.user_id, []).append(q)
        return by_user

    def users(self) -> list[str]:
        """Every user id, sorted."""
        return list(self._users)

    def queries(self, user_id: str | None = None) -> list[LampRecord]:
        """All queries (input order), or one user's; profiles are left empty (see profile())."""
        if user_id is None:
            return list(self._queries)
        self._check_user(user_id)
        return list(self._queries_by_user.get(user_id, ()))

    def _check_user(self, user_id: str) -> None:
        if user_id not in self._users:
            raise NotFoundError(f"user {user_id!r} is not in dataset {self.uri}")

    def _bucket(self, bucket: int) -> ds.Dataset:
        return ds.dataset(self._path(layout.bucket_dir(bucket)), filesystem=self._fs,
                          format="parquet", schema=layout.PROFILE_SCHEMA)

    def profile(self, user_id: str) -> tuple[dict, ...]:
        """One user's history items in their original order, reading only that user's bucket."""
        self._check_user(user_id)
        bucket = self._bucket(layout.user_bucket(user_id, self.num_buckets))
        table = bucket.to_table(columns=["position", "item_json"],
                                filter=ds.field("user_id") == user_id)
        table = table.sort_by("position")
        return tuple(json.loads(text) for text in table.column("item_json").to_pylist())

    def records(self) -> Iterator[LampRecord]:
        """Every query with its user's profile, one bucket in memory at a time."""
        by_user = self._queries_by_user
        for bucket in range(self.num_buckets):
            path = self._path(layout.bucket_dir(bucket))
            if self._fs.get_file_info(path).type != pafs.FileType.Directory:
                continue  # no user hashed here
            table = self._bucket(bucket).to_table(columns=["user_id", "position", "item_json"])
            table = table.sort_by([("user_id", "ascending"), ("position", "ascending")])
            for user_id, items in _group_items(table):
                for q in by_user.get(user_id, ()):
                    yield replace(q, profile=items)

    def summary(self) -> dict[str, Any]:
        """Counts from meta.json plus per-user distributions (items, queries)."""
        summary: dict[str, Any] = {"uri": self.uri}
        summary.update((k, self.meta[k]) for k in ("task", "num_users", "num_items",
                                                     "num_queries", "num_with_gold",
                                                     "num_buckets"))
        if self._users:
            summary["items_per_user"] = spread([n for n, _ in self._users.values()])
            summary["queries_per_user"] = spread([n for _, n in self._users.values()])
        return summary


def _group_items(table: pa.Table) -> Iterator[tuple[str, tuple[dict, ...]]]:
    """(user_id, items) runs of a table sorted by user_id, position."""
    users = table.column("user_id").to_pylist()
    texts = table.column("item_json").to_pylist()
    start = 0
    for end in range(1, len(users) + 1):
        if end == len(users) or users[end] != users[start]:
            yield users[start], tuple(json.loads(t) for t in texts[start:end])
            start = end
