"""Durable per-user history (LaMP profile items): the SQLite backend and what both backends share.

SQLite is the embedded default for one machine. An append returns only after the transaction is
committed with `synchronous=FULL` in WAL mode, so an acknowledged append survives a process crash
or power loss. Several processes on one node (Serve replicas, a fitting job) may share one file:
SQLite serializes writers. For several nodes use `hydralm.history_pg.PostgresHistoryStore`.

Both backends keep the same rules (`HistoryStore`):
- appends are idempotent by item id: an item whose id the user already has, with the same
  content, is skipped (a client re-sending an append after a lost answer adds nothing); with other
  content the whole append is refused (`HistoryConflictError`);
- every item needs an `id` (a string or a number, compared as text); an item without one is a
  ValueError and nothing of the call is stored;
- a user's items keep their append order, and `version(user)` grows with every append that adds;
- user ids are stored as data, never used as paths, so no id can escape the store's directory.
"""

from __future__ import annotations

import fcntl
import json
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

from hydralm.errors import HistoryConflictError
from hydralm.pipeline.interfaces import HistoryStore

__all__ = ["MAX_USER_ID_LENGTH", "SqliteHistoryStore", "encode_items", "new_items", "page_versions",
           "validate_user_id"]

log = logging.getLogger(__name__)

MAX_USER_ID_LENGTH = 256
_ID_CHUNK = 500  # item ids per `IN (...)` lookup
_SEED_BATCH = 500  # users per seeding transaction

# Schema 2: item ids (idempotent appends) and a users table (version, length).
_SCHEMA_VERSION = 2
_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    user_id TEXT NOT NULL,
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    item_json TEXT NOT NULL,
    item_id TEXT
);
CREATE INDEX IF NOT EXISTS items_by_user ON items (user_id, seq);
CREATE TABLE IF NOT EXISTS users (
    user_id TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    length INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS seeded (name TEXT PRIMARY KEY);
"""
# A schema-1 file (no item_id, no users table): ids of existing items are read from their JSON,
# the first item of each (user, id) keeps it; versions start at the users' lengths.
_MIGRATE_1_TO_2 = """
UPDATE items SET item_id = CAST(json_extract(item_json, '$.id') AS TEXT)
 WHERE seq IN (SELECT MIN(seq) FROM items GROUP BY user_id, json_extract(item_json, '$.id'));
INSERT OR IGNORE INTO users (user_id, version, length)
    SELECT user_id, COUNT(*), COUNT(*) FROM items GROUP BY user_id;
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


def encode_items(items: Iterable[dict]) -> list[tuple[str, str]]:
    """(item id as text, canonical JSON) per item; ValueError naming the first item without an
    id. Canonical JSON (sorted keys) makes a re-sent item compare equal to the stored one."""
    out = []
    for n, item in enumerate(items):
        if not isinstance(item, dict):
            raise ValueError(f"items.{n}: a history item must be an object, got {item!r:.80}")
        item_id = item.get("id")
        if item_id is None or isinstance(item_id, bool) or not isinstance(item_id, str | int):
            raise ValueError(f"items.{n}.id: every history item needs an id (a string or an "
                             f"integer; appends are idempotent by id), got {item_id!r}")
        out.append((str(item_id), json.dumps(item, ensure_ascii=False, sort_keys=True)))
    return out


def new_items(user_id: str, encoded: list[tuple[str, str]],
              stored: dict[str, str]) -> list[tuple[str, str]]:
    """The items of `encoded` to insert, in order: those whose id is neither in `stored` (id ->
    JSON already in the user's history) nor earlier in the call. An id seen before with other
    content is a HistoryConflictError."""
    seen = dict(stored)
    fresh = []
    for n, (item_id, item_json) in enumerate(encoded):
        before = seen.get(item_id)
        if before is None:
            seen[item_id] = item_json
            fresh.append((item_id, item_json))
        elif before != item_json:
            raise HistoryConflictError(
                f"items.{n}.id: user {user_id!r} already has an item with id {item_id!r} and "
                f"other content", index=n, item_id=item_id)
    return fresh


def _run_script(conn: sqlite3.Connection, script: str) -> None:
    """Each statement of `script` inside the caller's transaction (executescript would commit)."""
    for statement in script.split(";"):
        if statement.strip():
            conn.execute(statement)


def page_versions(fetch: Callable[[str, int], Sequence[tuple[str, int]]],
                  batch_size: int) -> Iterator[tuple[str, int]]:
    """Every (user, version) in user-id order, read `batch_size` at a time by keyset paging:
    `fetch(after, limit)` returns the next users after `after` (the stores' iter_versions)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    after = ""
    while True:
        rows = fetch(after, batch_size)
        yield from ((u, int(v)) for u, v in rows)
        if len(rows) < batch_size:
            return
        after = rows[-1][0]


class SqliteHistoryStore(HistoryStore):
    """History of every user in one SQLite file (created on first use, schema 1 migrated)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._migrate()

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            self._local.conn = conn
        return conn

    def _migrate(self) -> None:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            (schema,) = conn.execute("PRAGMA user_version").fetchone()
            if schema < _SCHEMA_VERSION:
                columns = {r[1] for r in conn.execute("PRAGMA table_info(items)")}
                if columns and "item_id" not in columns:
                    conn.execute("ALTER TABLE items ADD COLUMN item_id TEXT")
                _run_script(conn, _SCHEMA)
                if columns:
                    _run_script(conn, _MIGRATE_1_TO_2)
                    log.info("migrated history store %s to schema %d", self.path, _SCHEMA_VERSION)
                conn.execute("CREATE UNIQUE INDEX IF NOT EXISTS items_by_id ON items "
                             "(user_id, item_id)")
                conn.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def get(self, user_id: str) -> list[dict]:
        validate_user_id(user_id)
        rows = self._conn().execute(
            "SELECT item_json FROM items WHERE user_id = ? ORDER BY seq", (user_id,)).fetchall()
        return [json.loads(r[0]) for r in rows]

    def append(self, user_id: str, items: list[dict]) -> int:
        validate_user_id(user_id)
        encoded = encode_items(items)
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            fresh = new_items(user_id, encoded, self._stored(conn, user_id, encoded))
            if fresh:
                conn.executemany("INSERT INTO items (user_id, item_id, item_json) VALUES (?, ?, ?)",
                                 [(user_id, i, j) for i, j in fresh])
                conn.execute("INSERT INTO users (user_id, version, length) VALUES (?, 1, ?) "
                             "ON CONFLICT (user_id) DO UPDATE SET version = version + 1, "
                             "length = length + excluded.length", (user_id, len(fresh)))
            length = self._length(conn, user_id)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        log.debug("appended %d of %d items for a user; history now %d",
                  len(fresh), len(items), length)
        return length

    @staticmethod
    def _stored(conn: sqlite3.Connection, user_id: str,
                encoded: list[tuple[str, str]]) -> dict[str, str]:
        ids = sorted({i for i, _ in encoded})
        stored: dict[str, str] = {}
        for start in range(0, len(ids), _ID_CHUNK):
            chunk = ids[start:start + _ID_CHUNK]
            stored.update(conn.execute(
                f"SELECT item_id, item_json FROM items WHERE user_id = ? AND item_id IN "
                f"({','.join('?' * len(chunk))})", (user_id, *chunk)).fetchall())
        return stored

    @staticmethod
    def _length(conn: sqlite3.Connection, user_id: str) -> int:
        row = conn.execute("SELECT length FROM users WHERE user_id = ?", (user_id,)).fetchone()
        return int(row[0]) if row else 0

    def version(self, user_id: str) -> int:
        row = self._conn().execute("SELECT version FROM users WHERE user_id = ?",
                                   (validate_user_id(user_id),)).fetchone()
        return int(row[0]) if row else 0

    def iter_versions(self, batch_size: int = 1000) -> Iterator[tuple[str, int]]:
        return page_versions(lambda after, limit: self._conn().execute(
            "SELECT user_id, version FROM users WHERE user_id > ? ORDER BY user_id LIMIT ?",
            (after, limit)).fetchall(), batch_size)

    def seed(self, histories: Iterable[tuple[str, list[dict]]]) -> int:
        """Load users' base histories (skips users that already have any), a batch of users per
        transaction; users loaded."""
        loaded, batch = 0, []
        for user_id, items in histories:
            batch.append((validate_user_id(user_id), encode_items(items)))
            if len(batch) == _SEED_BATCH:
                loaded += self._seed_batch(batch)
                batch = []
        return loaded + (self._seed_batch(batch) if batch else 0)

    def _seed_batch(self, batch: list[tuple[str, list[tuple[str, str]]]]) -> int:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            loaded = 0
            for user_id, encoded in batch:
                fresh = new_items(user_id, encoded, {})
                if not fresh or self._length(conn, user_id):
                    continue
                conn.executemany("INSERT INTO items (user_id, item_id, item_json) "
                                 "VALUES (?, ?, ?)", [(user_id, i, j) for i, j in fresh])
                conn.execute("INSERT INTO users (user_id, version, length) VALUES (?, 1, ?)",
                             (user_id, len(fresh)))
                loaded += 1
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return loaded

    def seed_once(self, name: str,
                  histories: Callable[[], Iterable[tuple[str, list[dict]]]]) -> int:
        """`seed(histories())` unless a seeding called `name` finished before in this store.

        A lock file beside the store serializes concurrent callers (every ingress replica seeds
        at start); the marker is a row in the store itself, written after the last user."""
        with open(self.path.with_name(f"{self.path.name}.seed.lock"), "a", encoding="utf-8") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            if self._conn().execute("SELECT 1 FROM seeded WHERE name = ?", (name,)).fetchone():
                return 0
            loaded = self.seed(histories())
            self._conn().execute("INSERT OR IGNORE INTO seeded (name) VALUES (?)", (name,))
        return loaded

    def count(self, user_id: str) -> int:
        return self._length(self._conn(), validate_user_id(user_id))

    def users(self) -> list[str]:
        return [r[0] for r in self._conn().execute("SELECT user_id FROM users ORDER BY user_id")]
