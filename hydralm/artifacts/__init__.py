"""Artifacts: storage (a local directory or s3://, atomic writes) and the versioned registry.

`Registry(uri)` stores base checkpoints, one head file per user and a global head per kind, a
sharded index of the heads (index.py), and a manifest written last by compare-and-swap (see
registry.py for the layout and guarantees); `gc.collect` removes files no manifest names any more,
`migrate.migrate` converts a registry of the older single-index layout.
"""

from hydralm.artifacts.keys import shard_of, user_token, validate_key
from hydralm.artifacts.manifest import (
    HEAD_KINDS,
    BaseEntry,
    FileRef,
    HeadEntry,
    HeadKind,
    HeadShard,
    Manifest,
    ShardTable,
    TableRef,
)
from hydralm.artifacts.registry import GLOBAL_USER, MANIFEST_KEY, Registry
from hydralm.artifacts.s3 import S3Storage
from hydralm.artifacts.serialize import HeadFile, decode_head, encode_head
from hydralm.artifacts.storage import LocalStorage, Storage, WriteConflictError

__all__ = [
    "GLOBAL_USER",
    "HEAD_KINDS",
    "MANIFEST_KEY",
    "BaseEntry",
    "FileRef",
    "HeadEntry",
    "HeadFile",
    "HeadKind",
    "HeadShard",
    "LocalStorage",
    "Manifest",
    "Registry",
    "S3Storage",
    "ShardTable",
    "Storage",
    "TableRef",
    "WriteConflictError",
    "decode_head",
    "encode_head",
    "shard_of",
    "user_token",
    "validate_key",
]
