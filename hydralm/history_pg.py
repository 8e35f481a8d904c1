"""The history store on PostgreSQL: one database shared by any number of ingress replicas and jobs.

Same rules as the SQLite backend (see hydralm.history): durable before an append returns (a commit
with PostgreSQL's default `synchronous_commit=on`), idempotent by item id, a user's items in
append order, `version(user)` growing with every append that adds. Each append locks its user's
row in `hydralm_history_users` first, so concurrent appends for one user (from any replica) are
serialized and get consecutive positions; appends for different users run in parallel.

Connections come from a psycopg_pool pool that checks each connection before lending it, so a
database restart costs the requests made while it is down (HistoryUnavailableError, a 503 at the
API) and nothing after: the pool reconnects by itself. Where to connect comes from the environment
or a mounted Secret file (`history_dsn()`), never from a config file.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg import conninfo
from psycopg_pool import ConnectionPool, PoolTimeout

from hydralm.errors import ConfigError, HistoryUnavailableError
from hydralm.history import encode_items, new_items, page_versions, validate_user_id
from hydralm.pipeline.interfaces import HistoryStore
from hydralm.settings import env_float, env_int, env_str

__all__ = ["PostgresHistoryStore", "history_dsn"]

log = logging.getLogger(__name__)

_SEED_LOCK = 0x68796472_61686973  # pg_advisory_lock keys: seeding ("hydrahis"),
_SCHEMA_LOCK = _SEED_LOCK + 1      # creating the tables
_SEED_BATCH = 500                  # users per seeding transaction
_ATTEMPTS = 2                      # a statement that lost its connection is retried once

_SCHEMA = """
CREATE TABLE IF NOT EXISTS hydralm_history_users (
    user_id text COLLATE "C" PRIMARY KEY,
    version bigint NOT NULL,
    length integer NOT NULL
);
CREATE TABLE IF NOT EXISTS hydralm_history_items (
    user_id text COLLATE "C" NOT NULL,
    pos integer NOT NULL,
    item_id text NOT NULL,
    item_json text NOT NULL,
    PRIMARY KEY (user_id, pos),
    UNIQUE (user_id, item_id)
);
CREATE TABLE IF NOT EXISTS hydralm_history_seeded (name text PRIMARY KEY);
"""


def history_dsn() -> str:
    """HYDRALM_HISTORY_DSN, else the content of HYDRALM_HISTORY_DSN_FILE, else "" (libpq then
    reads PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE, ...)."""
    dsn = env_str("HYDRALM_HISTORY_DSN").strip()
    path = env_str("HYDRALM_HISTORY_DSN_FILE").strip()
    if dsn or not path:
        return dsn
    try:
        dsn = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"HYDRALM_HISTORY_DSN_FILE {path!r} cannot be read: {exc}") from exc
    if not dsn:
        raise ConfigError(f"HYDRALM_HISTORY_DSN_FILE {path!r} is empty")
    return dsn


def _where(dsn: str) -> str:
    """host:port/dbname of a DSN for messages and logs (never the password)."""
    try:
        parts = conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        raise ConfigError(f"the history DSN is not a valid libpq connection string: {exc}") from exc
    return (f"{parts.get('host', '$PGHOST')}:{parts.get('port', '$PGPORT')}/"
            f"{parts.get('dbname', '$PGDATABASE')}")


class PostgresHistoryStore(HistoryStore):
    """History of every user in a PostgreSQL database (tables created on first use)."""

    def __init__(self, dsn: str | None = None, *, pool_min: int | None = None,
                 pool_max: int | None = None, timeout_s: float | None = None) -> None:
        self._dsn = history_dsn() if dsn is None else dsn
        self.where = _where(self._dsn)
        self.timeout_s = env_float("HYDRALM_HISTORY_TIMEOUT_S") if timeout_s is None else timeout_s
        pool_min = env_int("HYDRALM_HISTORY_POOL_MIN") if pool_min is None else pool_min
        pool_max = env_int("HYDRALM_HISTORY_POOL_MAX") if pool_max is None else pool_max
        if not (0 <= pool_min <= pool_max and pool_max >= 1 and self.timeout_s > 0):
            raise ConfigError(f"history pool: need 0 <= min ({pool_min}) <= max ({pool_max}), "
                              f"max >= 1 and timeout_s > 0 (got {self.timeout_s})")
        ms = max(1, int(self.timeout_s * 1000))
        self._pool = ConnectionPool(
            self._dsn, min_size=pool_min, max_size=pool_max, timeout=self.timeout_s, open=False,
            check=ConnectionPool.check_connection, name="hydralm-history",
            kwargs={"connect_timeout": max(1, round(self.timeout_s)),
                    "application_name": "hydralm-history",
                    "options": f"-c statement_timeout={ms} -c lock_timeout={ms}"})
        self._pool.open(wait=False)
        try:
            self._run(self._create_schema)
        except BaseException:
            self._pool.close()  # its workers would retry forever
            raise
        log.info("history store: PostgreSQL at %s, pool %d-%d", self.where, pool_min, pool_max)

    @staticmethod
    def _create_schema(conn: psycopg.Connection) -> None:
        # Replicas starting together would race on CREATE TABLE IF NOT EXISTS (a unique
        # violation in the catalog): one at a time.
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
        conn.execute(_SCHEMA)

    def close(self) -> None:
        self._pool.close()

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection]:
        """A pooled connection inside one transaction (committed when the block ends)."""
        with self._pool.connection() as conn, conn.transaction():
            yield conn

    def _run(self, work: Callable[[psycopg.Connection], object]):
        """`work(conn)` in one transaction; a lost connection is retried once (appends are
        idempotent, so a retry after an unanswered commit adds nothing), then a
        HistoryUnavailableError naming the database."""
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                with self._connection() as conn:
                    return work(conn)
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                if attempt == _ATTEMPTS or isinstance(exc, PoolTimeout | psycopg.errors.QueryCanceled):
                    raise HistoryUnavailableError(
                        f"history database {self.where} unavailable: {type(exc).__name__}: "
                        f"{str(exc).strip()[:200]}") from exc
                log.warning("history database %s: %s; retrying once", self.where,
                            type(exc).__name__)
        raise AssertionError("unreachable")

    def get(self, user_id: str) -> list[dict]:
        validate_user_id(user_id)

        def read(conn: psycopg.Connection) -> list[dict]:
            rows = conn.execute("SELECT item_json FROM hydralm_history_items WHERE user_id = %s "
                                "ORDER BY pos", (user_id,)).fetchall()
            return [json.loads(r[0]) for r in rows]

        return self._run(read)

    def append(self, user_id: str, items: list[dict]) -> int:
        validate_user_id(user_id)
        encoded = encode_items(items)
        if not encoded:
            return self.count(user_id)
        return self._run(lambda conn: self._append(conn, user_id, encoded))

    @staticmethod
    def _append(conn: psycopg.Connection, user_id: str, encoded: list[tuple[str, str]]) -> int:
        # The upsert takes the user's row lock: one append per user at a time, in commit order.
        (length,) = conn.execute(
            "INSERT INTO hydralm_history_users (user_id, version, length) VALUES (%s, 0, 0) "
            "ON CONFLICT (user_id) DO UPDATE SET user_id = EXCLUDED.user_id RETURNING length",
            (user_id,)).fetchone()
        stored = dict(conn.execute(
            "SELECT item_id, item_json FROM hydralm_history_items WHERE user_id = %s "
            "AND item_id = ANY(%s)", (user_id, sorted({i for i, _ in encoded}))).fetchall())
        fresh = new_items(user_id, encoded, stored)  # HistoryConflictError rolls back
        if not fresh:
            return int(length)
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO hydralm_history_items (user_id, pos, item_id, item_json) "
                            "VALUES (%s, %s, %s, %s)",
                            [(user_id, length + n, i, j) for n, (i, j) in enumerate(fresh)])
        conn.execute("UPDATE hydralm_history_users SET version = version + 1, length = %s "
                     "WHERE user_id = %s", (length + len(fresh), user_id))
        return int(length) + len(fresh)

    def version(self, user_id: str) -> int:
        validate_user_id(user_id)
        row = self._run(lambda conn: conn.execute(
            "SELECT version FROM hydralm_history_users WHERE user_id = %s",
            (user_id,)).fetchone())
        return int(row[0]) if row else 0

    def count(self, user_id: str) -> int:
        validate_user_id(user_id)
        row = self._run(lambda conn: conn.execute(
            "SELECT length FROM hydralm_history_users WHERE user_id = %s", (user_id,)).fetchone())
        return int(row[0]) if row else 0

    def iter_versions(self, batch_size: int = 1000) -> Iterator[tuple[str, int]]:
        return page_versions(lambda after, limit: self._run(lambda conn: conn.execute(
            "SELECT user_id, version FROM hydralm_history_users WHERE user_id > %s "
            "ORDER BY user_id LIMIT %s", (after, limit)).fetchall()), batch_size)

    def users(self) -> list[str]:
        return [u for u, _ in self.iter_versions()]

    def seed(self, histories: Iterable[tuple[str, list[dict]]]) -> int:
        """Load users' base histories (users that already have any keep theirs), a batch of
        users per transaction with COPY; users loaded."""
        loaded, batch = 0, []
        for user_id, items in histories:
            batch.append((validate_user_id(user_id), encode_items(items)))
            if len(batch) == _SEED_BATCH:
                loaded += self._run(lambda conn, b=batch: _seed_batch(conn, b))
                batch = []
        if batch:
            loaded += self._run(lambda conn: _seed_batch(conn, batch))
        return loaded

    def seed_once(self, name: str,
                  histories: Callable[[], Iterable[tuple[str, list[dict]]]]) -> int:
        """`seed(histories())` unless a seeding called `name` finished before in this database.
        An advisory lock serializes the replicas of every node; the marker row is written after
        the last user."""
        try:
            lock_conn = psycopg.connect(self._dsn, autocommit=True,
                                        connect_timeout=max(1, round(self.timeout_s)))
        except psycopg.OperationalError as exc:
            raise HistoryUnavailableError(f"history database {self.where} unavailable: "
                                          f"{str(exc).strip()[:200]}") from exc
        with lock_conn:  # its own connection: seeding itself uses the pool
            lock_conn.execute("SELECT pg_advisory_lock(%s)", (_SEED_LOCK,))
            if lock_conn.execute("SELECT 1 FROM hydralm_history_seeded WHERE name = %s",
                                 (name,)).fetchone():
                return 0
            start = time.monotonic()
            loaded = self.seed(histories())
            lock_conn.execute("INSERT INTO hydralm_history_seeded (name) VALUES (%s) "
                              "ON CONFLICT DO NOTHING", (name,))
            log.info("seeded %d users in %.1f s", loaded, time.monotonic() - start)
            return loaded  # closing the connection releases the lock


def _seed_batch(conn: psycopg.Connection, batch: list[tuple[str, list[tuple[str, str]]]]) -> int:
    """Insert the users of `batch` that have no row yet (and at least one item), with COPY."""
    wanted = {u: new_items(u, enc, {}) for u, enc in batch if enc}
    if not wanted:
        return 0
    rows = conn.execute(
        "INSERT INTO hydralm_history_users (user_id, version, length) "
        "SELECT * FROM unnest(%s::text[], %s::bigint[], %s::int[]) ON CONFLICT DO NOTHING "
        "RETURNING user_id",
        (list(wanted), [1] * len(wanted), [len(v) for v in wanted.values()])).fetchall()
    with conn.cursor().copy("COPY hydralm_history_items (user_id, pos, item_id, item_json) "
                            "FROM STDIN") as copy:
        for (user_id,) in rows:
            for pos, (item_id, item_json) in enumerate(wanted[user_id]):
                copy.write_row((user_id, pos, item_id, item_json))
    return len(rows)


