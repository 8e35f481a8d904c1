"""Seeding the history store from a base-history dataset: once, task-checked, never overwriting."""

from __future__ import annotations

import pytest

from hydralm.data import LampRecord
from hydralm.data.parquet import write_dataset
from hydralm.errors import ConfigError
from hydralm.history import SqliteHistoryStore
from serving.seeding import seed_history


def _item(i: int) -> dict:
    return {"id": str(i), "description": f"film {i}", "tag": "comedy"}


@pytest.fixture
def dataset(tmp_path) -> str:
    records = [LampRecord(id=f"q{u}", user_id=f"u{u}", input="tag?",
                          profile=tuple(_item(10 * u + i) for i in range(3))) for u in range(4)]
    uri = str(tmp_path / "base")
    write_dataset(records, uri, task="synth-tag", progress=False)
    return uri


def test_seeds_once_and_keeps_existing_histories(tmp_path, dataset):
    store = SqliteHistoryStore(tmp_path / "h.db")
    store.append("u1", [_item(99)])  # a user with history keeps it
    assert seed_history(store, dataset, "synth-tag") == 3
    assert [i["id"] for i in store.get("u0")] == ["0", "1", "2"]
    assert [i["id"] for i in store.get("u1")] == ["99"]
    store.append("u0", [_item(98)])
    # A second replica (or restart) finds the marker and loads nothing again.
    assert seed_history(SqliteHistoryStore(tmp_path / "h.db"), dataset, "synth-tag") == 0
    assert len(store.get("u0")) == 4


def test_refuses_a_dataset_of_another_task(tmp_path, dataset):
    with pytest.raises(ConfigError, match="synth-tag dataset"):
        seed_history(SqliteHistoryStore(tmp_path / "h.db"), dataset, "LaMP-2M")
