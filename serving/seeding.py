"""Seeding the history store from a base-history dataset, once, whatever the number of replicas.

Every ingress replica calls `seed_history` at start. An exclusive lock file beside the store
serializes them; the first loads each dataset user's profile (users that already have history
keep theirs), then writes a marker naming the dataset, so later starts skip the scan.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
from pathlib import Path

from hydralm.data.parquet import Dataset
from hydralm.errors import ConfigError
from hydralm.history import SqliteHistoryStore

__all__ = ["seed_history"]

log = logging.getLogger(__name__)


def _marker(store_path: Path, dataset_uri: str) -> Path:
    digest = hashlib.sha256(dataset_uri.encode("utf-8")).hexdigest()[:16]
    return store_path.with_name(f"{store_path.name}.seeded-{digest}")


def seed_history(store: SqliteHistoryStore, dataset_uri: str, task: str) -> int:
    """Load the dataset's users' profiles into `store` unless done before; users loaded.

    The dataset must be of the served `task` (its items have that task's fields)."""
    marker = _marker(store.path, dataset_uri)
    lock_path = store.path.with_name(f"{store.path.name}.seed.lock")
    with open(lock_path, "a", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if marker.exists():
            return 0
        dataset = Dataset(dataset_uri)
        if dataset.task != task:
            raise ConfigError(f"base_history {dataset_uri!r} is a {dataset.task} dataset, but "
                              f"the app serves task {task!r}")
        loaded = store.seed((user, list(dataset.profile(user))) for user in dataset.users())
        marker.write_text(dataset_uri + "\n", encoding="utf-8")
    log.info("seeded the history store with %d users' base histories", loaded)
    return loaded
