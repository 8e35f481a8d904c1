from __future__ import annotations

import multiprocessing as mp
import os
import sqlite3

import pytest

from hydralm.errors import HistoryConflictError
from hydralm.history import SqliteHistoryStore


def test_append_then_get_in_order(tmp_path):
    store = SqliteHistoryStore(tmp_path / "h.db")
    assert store.get("alice") == []
    assert store.append("alice", [{"id": "1", "text": "a"}]) == 1
    assert store.append("alice", [{"id": "2", "text": "b"}, {"id": "3", "text": "c"}]) == 3
    assert [i["id"] for i in store.get("alice")] == ["1", "2", "3"]
    assert store.get("bob") == []


@pytest.mark.parametrize("user_id", ["", "a\x00b", "x" * 300, None, 7, "tab\tid"])
def test_bad_user_ids_are_rejected(tmp_path, user_id):
    store = SqliteHistoryStore(tmp_path / "h.db")
    with pytest.raises(ValueError, match="user id"):
        store.append(user_id, [{"id": "1"}])


def test_path_like_ids_are_data_not_paths(tmp_path):
    store = SqliteHistoryStore(tmp_path / "sub" / "h.db")
    store.append("../../etc/passwd", [{"id": "1"}])
    assert store.get("../../etc/passwd") == [{"id": "1"}]
    assert sorted(p.name for p in (tmp_path / "sub").iterdir() if not p.name.startswith("h.db")) == []


def _append_then_die(path: str) -> None:
    store = SqliteHistoryStore(path)
    store.append("carol", [{"id": "acked"}])
    os._exit(9)  # crash right after the acknowledgement: no clean close, no atexit


def test_acknowledged_append_survives_a_crash(tmp_path):
    path = str(tmp_path / "h.db")
    proc = mp.get_context("spawn").Process(target=_append_then_die, args=(path,))
    proc.start()
    proc.join(60)
    assert proc.exitcode == 9
    assert SqliteHistoryStore(path).get("carol") == [{"id": "acked"}]


def test_seed_skips_users_with_history(tmp_path):
    store = SqliteHistoryStore(tmp_path / "h.db")
    store.append("u1", [{"id": "x"}])
    assert store.seed([("u1", [{"id": "y"}]), ("u2", [{"id": "z"}])]) == 1
    assert store.get("u1") == [{"id": "x"}] and store.get("u2") == [{"id": "z"}]
    assert store.users() == ["u1", "u2"]


def test_version_grows_with_every_append_that_adds(tmp_path):
    store = SqliteHistoryStore(tmp_path / "h.db")
    assert store.version("alice") == 0
    store.append("alice", [{"id": "1"}])
    v1 = store.version("alice")
    store.append("alice", [{"id": "1"}])          # re-sent: adds nothing, same version
    assert store.version("alice") == v1 > 0
    store.append("alice", [{"id": "2"}])
    assert store.version("alice") > v1
    assert store.version("bob") == 0


@pytest.mark.parametrize("batch_size", [1, 2, 1000])
def test_iter_versions_pages_every_user_in_id_order(tmp_path, batch_size):
    store = SqliteHistoryStore(tmp_path / "h.db")
    for user in ["c", "a", "b"]:
        store.append(user, [{"id": "1"}])
    store.append("a", [{"id": "2"}])
    got = list(store.iter_versions(batch_size=batch_size))
    assert [u for u, _ in got] == ["a", "b", "c"]
    assert dict(got) == {u: store.version(u) for u in "abc"}


def test_resent_append_is_a_no_op_and_other_content_is_a_conflict(tmp_path):
    store = SqliteHistoryStore(tmp_path / "h.db")
    assert store.append("u", [{"id": "1", "t": "a"}, {"id": "2", "t": "b"}]) == 2
    assert store.append("u", [{"t": "b", "id": "2"}, {"id": "3", "t": "c"}]) == 3  # key order
    with pytest.raises(HistoryConflictError, match="'2'") as info:
        store.append("u", [{"id": "4", "t": "d"}, {"id": "2", "t": "B"}])
    assert info.value.index == 1
    assert [i["id"] for i in store.get("u")] == ["1", "2", "3"]  # the refused call stored nothing


@pytest.mark.parametrize("item", [{"t": "no id"}, {"id": None}, {"id": True}, {"id": [1]}, "x"])
def test_items_without_an_id_are_refused_whole(tmp_path, item):
    store = SqliteHistoryStore(tmp_path / "h.db")
    with pytest.raises(ValueError, match=r"items\.1"):
        store.append("u", [{"id": "ok"}, item])
    assert store.get("u") == [] and store.version("u") == 0


def test_a_schema_1_file_is_migrated(tmp_path):
    path = tmp_path / "h.db"
    with sqlite3.connect(path) as conn:   # the schema before item ids and versions
        conn.executescript(
            "CREATE TABLE items (user_id TEXT NOT NULL, seq INTEGER PRIMARY KEY AUTOINCREMENT,"
            " item_json TEXT NOT NULL);"
            "INSERT INTO items (user_id, item_json) VALUES ('u', '{\"id\": \"1\"}'),"
            " ('u', '{\"id\": 2}'), ('v', '{\"id\": \"9\"}');")
    conn.close()
    store = SqliteHistoryStore(path)
    assert store.get("u") == [{"id": "1"}, {"id": 2}]
    assert dict(store.iter_versions()) == {"u": 2, "v": 1}
    assert store.append("u", [{"id": 2}]) == 2            # the migrated id is known
    assert store.append("u", [{"id": "3"}]) == 3 and store.version("u") == 3
