"""Seeding the history store from a base-history dataset, once, whatever the number of replicas.

Every ingress replica calls `seed_history` at start. The store serializes them (SQLite: a lock
file beside the database; PostgreSQL: an advisory lock); the first loads each dataset user's
profile (users that already have history keep theirs), then records the dataset in the store
itself, so later starts, on any node, skip the scan.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from hydralm.data.parquet import Dataset
from hydralm.errors import ConfigError

if TYPE_CHECKING:
    from hydralm.history import SqliteHistoryStore
    from hydralm.history_pg import PostgresHistoryStore

__all__ = ["seed_history"]

log = logging.getLogger(__name__)


def seed_history(store: SqliteHistoryStore | PostgresHistoryStore, dataset_uri: str,
                 task: str) -> int:
    """Load the dataset's users' profiles into `store` unless done before; users loaded.

    The dataset must be of the served `task` (its items have that task's fields)."""

    def histories():
        dataset = Dataset(dataset_uri)
        if dataset.task != task:
            raise ConfigError(f"base_history {dataset_uri!r} is a {dataset.task} dataset, but "
                              f"the app serves task {task!r}")
        return ((user, list(dataset.profile(user))) for user in dataset.users())

    loaded = store.seed_once(f"base_history:{dataset_uri}", histories)
    log.info("seeded the history store with %d users' base histories", loaded)
    return loaded
