"""The on-disk layout of a hydralm Parquet dataset, shared by its writer and its reader.

```
<root>/meta.json                  {"format", "format_version", "task", "num_buckets", counts}
<root>/users.parquet              user_id, n_items, n_queries            (sorted by user_id)
<root>/queries.parquet            id, user_id, input, gold (null if none) (input order)
<root>/profile/bucket=K/part-0.parquet
                                  user_id, item_id, position, item_json  (sorted by user_id,
                                                                          position)
```
A user's profile lives in bucket `crc32(user_id) % num_buckets` (hive-style directories), so
reading one user opens one bucket, and row-group statistics on the sorted user_id skip most of it.
Items are stored as JSON text so every task's fields fit one schema. meta.json is written last: a
directory without it is not a dataset (on S3, where there is no rename, it is the commit marker).
"""

from __future__ import annotations

import zlib

import pyarrow as pa

__all__ = [
    "DEFAULT_BUCKETS",
    "FORMAT",
    "FORMAT_VERSION",
    "META_FILE",
    "PROFILE_DIR",
    "PROFILE_SCHEMA",
    "QUERIES_FILE",
    "QUERY_SCHEMA",
    "USERS_FILE",
    "USER_SCHEMA",
    "bucket_dir",
    "user_bucket",
]

FORMAT = "hydralm-lamp-parquet"
FORMAT_VERSION = 1
DEFAULT_BUCKETS = 16
META_FILE = "meta.json"
USERS_FILE = "users.parquet"
QUERIES_FILE = "queries.parquet"
PROFILE_DIR = "profile"

PROFILE_SCHEMA = pa.schema([
    ("user_id", pa.string()),
    ("item_id", pa.string()),
    ("position", pa.int32()),
    ("item_json", pa.string()),
])
QUERY_SCHEMA = pa.schema([
    ("id", pa.string()),
    ("user_id", pa.string()),
    ("input", pa.string()),
    ("gold", pa.string()),
])
USER_SCHEMA = pa.schema([
    ("user_id", pa.string()),
    ("n_items", pa.int32()),
    ("n_queries", pa.int32()),
])


def user_bucket(user_id: str, num_buckets: int = DEFAULT_BUCKETS) -> int:
    """The profile bucket of a user: stable across processes and machines (crc32, not hash())."""
    return zlib.crc32(user_id.encode("utf-8")) % num_buckets


def bucket_dir(bucket: int) -> str:
    """The bucket's directory under the profile dir, hive-style so pyarrow can read `bucket`."""
    return f"{PROFILE_DIR}/bucket={bucket}"
