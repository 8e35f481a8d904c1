from __future__ import annotations

import multiprocessing as mp
import os

import pytest

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
