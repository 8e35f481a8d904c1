"""Whole-file writes a reader never sees half done, on a local path or s3://.

Locally `hydralm.atomic.write_atomic` writes them (a fsynced temporary sibling renamed over the
target, atomic on POSIX, then the directory fsynced). On S3 an object appears only when its upload
completes, so writing it directly is already atomic.
Used for label shards, their manifests and the user split: a killed job leaves either the old
file or the new one, and a re-run trusts every file it finds.
"""

from __future__ import annotations

import io
import json
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from hydralm import atomic
from hydralm.data.fs import filesystem_for, is_remote

__all__ = ["exists", "read_json", "read_parquet", "write_atomic", "write_json", "write_parquet"]


def write_atomic(uri: str, data: bytes) -> None:
    """Write `data` to `uri` so that it appears whole or not at all."""
    if is_remote(uri):
        fs, path = filesystem_for(uri)
        with fs.open_output_stream(path) as out:
            out.write(data)
        return
    atomic.write_atomic(uri, data)


def exists(uri: str) -> bool:
    fs, path = filesystem_for(uri)
    return fs.get_file_info(path).type == pafs.FileType.File


def write_parquet(uri: str, table: pa.Table) -> None:
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    write_atomic(uri, buffer.getvalue())


def read_parquet(uri: str) -> pa.Table:
    fs, path = filesystem_for(uri)
    return pq.read_table(path, filesystem=fs)


def write_json(uri: str, doc: Any) -> None:
    write_atomic(uri, json.dumps(doc, indent=1, sort_keys=True).encode("utf-8"))


def read_json(uri: str) -> Any:
    fs, path = filesystem_for(uri)
    with fs.open_input_stream(path) as stream:
        return json.loads(stream.read().decode("utf-8"))
