"""Refit planning without Ray: which users a refit fits, from the history store's versions against
what their heads record, the real SQLite store and registry entries; label shard names keyed by
the versions; the config section."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from training_fixtures import tiny_job

from hydralm.errors import ConfigError
from hydralm.history import SqliteHistoryStore
from hydralm.jobconfig import JobConfig
from training.fit_job import head_is_current
from training.refit_labels import open_history_store, plan_shards
from training.refit_plan import plan_refit

BASE = "base-1"


@dataclass(frozen=True)
class Head:
    base_version: str = BASE
    history_version: int | None = None


def _items(n: int, prefix: str = "i") -> list[dict]:
    return [{"id": f"{prefix}{k}", "description": f"a film number {k}", "tag": "comedy"}
            for k in range(n)]


# (head of the user or None, store items, dataset profile ids or None, expected reason)
CASES = [
    ("recorded and equal", "equal", 4, None, "unchanged"),
    ("recorded and older", "older", 4, None, "changed"),
    ("no head, enough items", None, 3, None, "new"),
    ("no head, too few items", None, 2, None, "below_min"),
    ("head on an older base, enough items", Head(base_version="old", history_version=9), 5, None,
     "changed"),
    ("head on an older base, too few items", Head(base_version="old"), 1, None, "below_min"),
    ("no version, dataset profile equal", Head(), 4, ["i0", "i1", "i2", "i3"], "from_dataset"),
    ("no version, items appended since", Head(), 5, ["i0", "i1", "i2", "i3"], "dataset_changed"),
    ("no version, not in the dataset", Head(), 4, None, "dataset_changed"),
]


@pytest.mark.parametrize("name, head, n_items, profile, expected", CASES,
                         ids=[c[0] for c in CASES])
def test_each_user_gets_one_reason(tmp_path, name, head, n_items, profile, expected):
    store = SqliteHistoryStore(tmp_path / "history.db")
    store.append("u1", _items(n_items))
    if head in ("equal", "older"):
        head = Head(history_version=store.version("u1") - (head == "older"))
    heads = {"reranker": {"u1": head} if head is not None else {}}
    (plan,) = plan_refit(store.iter_versions(), heads, BASE,
                         item_ids=lambda u: [i["id"] for i in store.get(u)],
                         baseline=lambda u: profile, min_items=3)
    assert plan.counts[expected] == 1 and plan.counts["users"] == 1
    refit = expected in ("changed", "new", "dataset_changed")
    assert plan.pending == ({"u1": store.version("u1")} if refit else {})


def test_unchanged_users_are_not_read_and_max_users_defers_the_rest(tmp_path):
    store = SqliteHistoryStore(tmp_path / "history.db")
    for user in ("a", "b", "c", "d"):
        store.append(user, _items(4))
    heads = {"reranker": {u: Head(history_version=store.version(u)) for u in ("a", "b")},
             "adapter": {}}
    read: list[str] = []

    def item_ids(user: str) -> list[str]:
        read.append(user)
        return [i["id"] for i in store.get(user)]

    store.append("b", _items(1, prefix="new"))
    reranker, adapter = plan_refit(store.iter_versions(batch_size=2), heads, BASE,
                                   item_ids=item_ids, baseline=lambda u: None, min_items=3,
                                   max_users=2)
    assert reranker.pending == {"b": store.version("b"), "c": store.version("c")}
    assert (reranker.counts["unchanged"], reranker.counts["deferred"]) == (1, 1)
    assert list(adapter.pending) == ["a", "b"] and adapter.counts["deferred"] == 2
    # a user's items are read once for both models, and never for a user with a current head
    assert read == ["a", "b", "c", "d"] and read.count("b") == 1
    heads["adapter"] = {"a": Head(history_version=store.version("a"))}
    read.clear()
    plan_refit(iter([("a", store.version("a"))]), heads, BASE, item_ids=item_ids,
               baseline=lambda u: None, min_items=3)
    assert read == []


@pytest.mark.parametrize("entry, history_version, current", [
    (None, 3, False),
    (Head(history_version=3), 3, True),
    (Head(history_version=2), 3, False),
    (Head(base_version="old", history_version=3), 3, False),
    (Head(), None, True),          # fit-users: the base is all that counts
    (Head(history_version=5), None, True),
])
def test_a_head_is_current_on_the_base_with_the_wanted_version(entry, history_version, current):
    assert head_is_current(entry, BASE, history_version) is current


def test_shard_names_change_with_history_versions(tmp_path):
    cfg = tiny_job(tmp_path / "job", tmp_path / "encoder")
    cfg.labels.users_per_shard = 2
    shards = plan_shards(cfg, "reranker", {"a": 1, "b": 4, "c": 2}, None)
    assert [s.users for s in shards] == [(("a", 1), ("b", 4)), (("c", 2),)]
    again = plan_shards(cfg, "reranker", {"c": 2, "b": 4, "a": 1}, None)
    assert [s.uri for s in again] == [s.uri for s in shards]
    newer = plan_shards(cfg, "reranker", {"a": 1, "b": 5, "c": 2}, None)
    assert newer[0].uri != shards[0].uri and newer[1].uri == shards[1].uri
    assert "/refit/labels/reranker/" in shards[0].uri
    assert plan_shards(cfg, "adapter", {"a": 1}, None)[0].uri != \
        plan_shards(cfg, "reranker", {"a": 1}, None)[0].uri


def test_refit_config_opens_the_named_sqlite_store(tmp_path):
    cfg = tiny_job(tmp_path / "job", tmp_path / "encoder",
                   refit={"history_path": str(tmp_path / "h.db"), "min_items": 4})
    store = open_history_store(cfg.refit)
    store.append("u1", _items(2))
    assert SqliteHistoryStore(tmp_path / "h.db").get("u1") == _items(2)


@pytest.mark.parametrize("refit, message", [
    ({"min_items": 1}, "refit.min_items"),
    ({"history_backend": "mysql"}, "refit.history_backend"),
    ({"max_users": 0}, "refit.max_users"),
    ({"dsn": "postgresql://u:p@h/db"}, "refit.dsn"),
])
def test_bad_refit_settings_are_refused_by_name(refit, message):
    with pytest.raises(ConfigError, match=message):
        JobConfig.from_dict({"task": "synth-tag", "data": {"synth": {}}, "refit": refit})


def test_a_run_is_planned_from_the_store_the_registry_and_the_dataset(tmp_path, tiny_encoder):
    """Heads made from the job's dataset (no version) stay until the store's items differ."""
    from hydralm.artifacts import Registry
    from hydralm.model import ModelConfig
    from hydralm.scoring import publish_random_registry
    from training.refit import plan_refit_run
    from training.users import prepare_users

    cfg = tiny_job(tmp_path / "job", tiny_encoder,
                   refit={"history_path": str(tmp_path / "h.db"), "min_items": 3})
    dataset, split = prepare_users(cfg)
    registry = Registry(cfg.paths.registry)
    with_heads = list(split.train)
    publish_random_registry(registry, with_heads,
                            config=ModelConfig(encoder_path=str(tiny_encoder), max_length=32))
    store = open_history_store(cfg.refit)
    for user in dataset.users():
        store.append(user, list(dataset.profile(user)))
    appended, newcomer = with_heads[0], split.test[0]
    store.append(appended, _items(1, prefix="fresh"))
    run = plan_refit_run(cfg, ["reranker", "adapter"])
    for plan in run.plans:
        assert plan.pending == {appended: store.version(appended),
                                **{u: store.version(u) for u in split.test}}
        assert plan.counts["from_dataset"] == len(with_heads) - 1 and newcomer in plan.pending
        assert plan.counts["new"] == len(split.test)
        shards = [s for s in run.shards if s.kind == plan.kind]
        assert {u: v for s in shards for u, v in s.users} == plan.pending
    assert run.needs_generator and run.reranks["reranker"] is None
