"""Durable per-user history (LaMP profile items) in SQLite.

An append returns only after the transaction is committed with `synchronous=FULL` in WAL mode, so an
acknowledged append survives a process crash or power loss. Several processes (Serve replicas, a
fitting job) may share one file: SQLite serializes writers. User ids are stored as data, never
used as paths, so no id can escape the store's directory.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path

from hydralm.pipeline.interfaces import HistoryStore

__all__ = ["MAX_USER_ID_LENGTH", "SqliteHistoryStore", "validate_user_id"]

log = logging.getLogger(__name__)

MAX_USER_ID_LENGTH = 256

_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    user_id TEXT NOT NULL,
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    item_json TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS items_by_user ON items (user_id, seq);
"""


def validate_user_id(user_id: object) -> str:
    """A user id is a non-empty printable string of bounded length (no NUL or control chars)."""
    if not isinstance(user_id, str) or not user_id:
        raise ValueError(f"user id must be a non-empty string, got {user_id!r}")
    if len(user_id) > MAX_USER_ID_LENGTH:
        raise ValueError(f"user id is longer than {MAX_USER_ID_LENGTH} characters "
                         f"(got {len(user_id)})")
    if any(ord(c) < 32 or ord(c) == 127 for c in user_id):
        raise ValueError(f"user id must not contain control characters, got {user_id!r}")
    return user_id


class SqliteHistoryStore(HistoryStore):
    """History of every user in one SQLite file (created on first use)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self._conn() as conn:
            conn.executescript(_SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            self._local.conn = conn
        return conn

    def get(self, user_id: str) -> list[dict]:
        validate_user_id(user_id)
        rows = self._conn().execute(
            "SELECT item_json FROM items WHERE user_id = ? ORDER BY seq", (user_id,)).fetchall()
        return [json.loads(r[0]) for r in rows]

    def append(self, user_id: str, items: list[dict]) -> int:
        validate_user_id(user_id)
        encoded = [json.dumps(item, ensure_ascii=False, sort_keys=True) for item in items]
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany("INSERT INTO items (user_id, item_json) VALUES (?, ?)",
                             [(user_id, e) for e in encoded])
            (count,) = conn.execute(
                "SELECT COUNT(*) FROM items WHERE user_id = ?", (user_id,)).fetchone()
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        log.debug("appended %d items for a user; history now %d", len(items), count)
        return int(count)

    def seed(self, histories: Iterable[tuple[str, list[dict]]]) -> int:
        """Load users' base histories once (skips users that already have any)."""
        loaded = 0
        for user_id, items in histories:
            if not self.count(user_id):
                self.append(user_id, items)
                loaded += 1
        return loaded

    def count(self, user_id: str) -> int:
        (n,) = self._conn().execute(
            "SELECT COUNT(*) FROM items WHERE user_id = ?", (validate_user_id(user_id),)).fetchone()
        return int(n)

    def users(self) -> list[str]:
        return [r[0] for r in self._conn().execute(
            "SELECT DISTINCT user_id FROM items ORDER BY user_id")]
