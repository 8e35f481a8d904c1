"""The history-store contract, run against both backends: SQLite and a real PostgreSQL on loopback.

Then what only the shared backend has to survive: PostgreSQL crashing and restarting during a
stream of appends through the real API (a 503 while it is down, recovery after, every acknowledged
item there), and several stores ("replicas") appending for one user at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from hydralm.errors import HistoryConflictError, HistoryUnavailableError
from hydralm.history import SqliteHistoryStore
from hydralm.history_pg import PostgresHistoryStore
from hydralm.pipeline import HistoryStore

Factory = Callable[[], HistoryStore]


@pytest.fixture(params=["sqlite", "postgres"])
def open_store(request, tmp_path) -> Iterator[Factory]:
    """Opens stores over one fresh database (each call: another replica's store)."""
    opened: list = []
    if request.param == "sqlite":
        def factory() -> HistoryStore:
            opened.append(SqliteHistoryStore(tmp_path / "h.db"))
            return opened[-1]
    else:
        dsn = request.getfixturevalue("postgres").create_database()

        def factory() -> HistoryStore:
            opened.append(PostgresHistoryStore(dsn, pool_min=1, pool_max=4, timeout_s=2.0))
            return opened[-1]
    yield factory
    for store in opened:
        getattr(store, "close", lambda: None)()


def _ids(items: list[dict]) -> list[str]:
    return [str(i["id"]) for i in items]


def test_appends_keep_order_and_count(open_store):
    store = open_store()
    assert store.get("alice") == [] and store.version("alice") == 0
    assert store.append("alice", [{"id": "1", "text": "a"}]) == 1
    assert store.append("alice", [{"id": "2", "text": "b"}, {"id": 3, "text": "c"}]) == 3
    assert store.get("alice") == [{"id": "1", "text": "a"}, {"id": "2", "text": "b"},
                                  {"id": 3, "text": "c"}]
    assert store.get("../../etc/passwd") == [] and store.get("bob") == []


def test_version_and_iter_versions(open_store):
    store = open_store()
    for user in ["c", "a", "b", "a:x", "A"]:
        store.append(user, [{"id": "1"}])
    before = store.version("a")
    store.append("a", [{"id": "1"}])                 # re-sent: no change
    assert store.version("a") == before
    store.append("a", [{"id": "2"}])
    assert store.version("a") > before
    for batch_size in (1, 2, 1000):
        got = list(store.iter_versions(batch_size=batch_size))
        assert [u for u, _ in got] == ["A", "a", "a:x", "b", "c"]  # bytewise order
        assert dict(got) == {u: store.version(u) for u in ["A", "a", "a:x", "b", "c"]}
    with pytest.raises(ValueError, match="batch_size"):
        list(store.iter_versions(batch_size=0))


def test_resent_appends_are_idempotent_and_conflicts_store_nothing(open_store):
    store = open_store()
    assert store.append("u", [{"id": "1", "t": "a"}, {"id": "2", "t": "b"}]) == 2
    assert store.append("u", [{"t": "b", "id": "2"}, {"id": "3", "t": "c"}]) == 3
    assert store.append("u", [{"id": "3", "t": "c"}, {"id": "3", "t": "c"}]) == 3
    with pytest.raises(HistoryConflictError, match="'1'") as info:
        store.append("u", [{"id": "4", "t": "d"}, {"id": "1", "t": "other"}])
    assert info.value.index == 1
    with pytest.raises(ValueError, match=r"items\.1\.id"):
        store.append("u", [{"id": "5"}, {"t": "no id"}])
    assert _ids(store.get("u")) == ["1", "2", "3"]


@pytest.mark.parametrize("user_id", ["", "a\x00b", "x" * 300, None, 7, "tab\tid"])
def test_bad_user_ids_are_refused(open_store, user_id):
    with pytest.raises(ValueError, match="user id"):
        open_store().append(user_id, [{"id": "1"}])


def test_seed_once_keeps_existing_histories(open_store):
    store = open_store()
    store.append("u1", [{"id": "x"}])
    assert store.seed_once("base", lambda: [("u1", [{"id": "y"}]), ("u2", [{"id": "z"}])]) == 1
    assert _ids(store.get("u1")) == ["x"] and _ids(store.get("u2")) == ["z"]
    # Another replica finds the marker and never calls the loader.
    assert open_store().seed_once("base", lambda: pytest.fail("seeded twice")) == 0


def test_replicas_appending_for_one_user_at_once(open_store):
    stores = [open_store(), open_store()]
    acked: list[list[str]] = [[], []]

    def stream(n: int) -> None:
        for i in range(40):
            item_id = f"r{n}-{i}"
            stores[n].append("shared", [{"id": item_id}, {"id": item_id}])  # dup in one call
            acked[n].append(item_id)

    threads = [threading.Thread(target=stream, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    got = _ids(stores[0].get("shared"))
    assert len(got) == len(set(got)) == 80
    for n in range(2):  # each replica's items in the order it appended them
        assert [i for i in got if i.startswith(f"r{n}-")] == acked[n]
    assert stores[1].version("shared") == 80


def test_postgres_down_is_a_history_unavailable_error_then_recovers(postgres):
    store = PostgresHistoryStore(postgres.create_database(), pool_min=2, pool_max=2,
                                 timeout_s=1.0)
    try:
        store.append("u", [{"id": "1"}])
        postgres.stop("immediate")
        try:
            start = time.monotonic()
            with pytest.raises(HistoryUnavailableError, match="127.0.0.1"):
                store.get("u")
            assert time.monotonic() - start < 5
        finally:
            postgres.start()
        # The pool reconnects by itself, within its reconnect backoff (1 s, doubling).
        start = time.monotonic()
        while time.monotonic() - start < 30:
            try:
                assert _ids(store.get("u")) == ["1"]
                break
            except HistoryUnavailableError:
                time.sleep(0.1)
        else:
            pytest.fail("the store did not recover within 30 s of the restart")
        print(f"recovered {time.monotonic() - start:.1f} s after the restart")
        assert store.append("u", [{"id": "2"}]) == 2
    finally:
        store.close()


def _stream_appends(post: Callable[[dict], int], count: int, *,
                    on_ack: Callable[[int], None] = lambda n: None,
                    deadline_s: float = 120.0) -> tuple[list[str], list[int]]:
    """Appends `count` items one at a time, re-sending an item until it is acknowledged (as a
    client does after a 503); the acknowledged ids in order and every status seen."""
    acked: list[str] = []
    statuses: list[int] = []
    deadline = time.monotonic() + deadline_s
    for n in range(count):
        item = {"id": f"s{n}", "description": f"story {n}", "tag": "comedy"}
        while True:
            assert time.monotonic() < deadline, f"item {n} never acknowledged: {statuses[-5:]}"
            status = post(item)
            statuses.append(status)
            if status == 200:
                break
            time.sleep(0.05)
        acked.append(item["id"])
        on_ack(len(acked))
    return acked, statuses


def test_postgres_restart_during_appends_through_the_api(postgres, tmp_path):
    from hydra_parts import running_api

    dsn = postgres.create_database()
    store = PostgresHistoryStore(dsn, pool_min=2, pool_max=4, timeout_s=1.0)
    restarted = threading.Event()
    bodies: list[dict] = []

    def crash_and_restart(acked: int) -> None:
        if acked == 15:        # a crash (no checkpoint), then a restart while appends go on
            postgres.stop("immediate")
        if acked == 15 and not restarted.is_set():
            threading.Timer(3.0, lambda: (postgres.start(), restarted.set())).start()

    try:
        with running_api(tmp_path, history=store) as parts:
            def post(item: dict) -> int:
                r = parts.client.post("/v1/users/carol/history", json={"items": [item]})
                if r.status_code != 200:
                    bodies.append({"status": r.status_code, **r.json()["error"],
                                   "retry_after": r.headers.get("retry-after")})
                return r.status_code

            acked, statuses = _stream_appends(post, 40, on_ack=crash_and_restart)
        assert restarted.wait(60)
        assert set(statuses) == {200, 503}, statuses
        assert all(b["status"] == 503 and b["code"] == "history_unavailable"
                   and b["type"] == "service_unavailable_error" and b["retry_after"] == "1"
                   for b in bodies), bodies[:3]
        assert "127.0.0.1" in bodies[0]["message"] and "password" not in bodies[0]["message"]
        assert _ids(store.get("carol")) == acked  # every acknowledged item, once, in order
        assert store.version("carol") == store.count("carol") == 40
    finally:
        if not (postgres.data / "postmaster.pid").exists():
            postgres.start()
        store.close()
