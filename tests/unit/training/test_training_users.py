"""The job's users and label shards without Ray: the reproducible train/new-user draw, the
prepared work dir guarded by a fingerprint, and shard names that change with their inputs."""

from __future__ import annotations

import pytest
from training_fixtures import tiny_job

from hydralm.errors import ConfigError
from hydralm.jobconfig import UsersConfig
from training.label_store import plan_shards, settings_key, write_manifest
from training.users import UserSplit, draw_users, load_split, pin_split, prepare_users

POOL = [f"u{i:02d}" for i in range(20)]


def test_one_pool_is_split_reproducibly_by_seed():
    split = draw_users(POOL, None, UsersConfig(num_test_users=5, seed=3))
    assert len(split.test) == 5 and len(split.train) == 15
    assert set(split.test).isdisjoint(split.train) and set(split.test) | set(split.train) == set(POOL)
    assert split == draw_users(list(reversed(POOL)), None, UsersConfig(num_test_users=5, seed=3))
    assert split.test != draw_users(POOL, None, UsersConfig(num_test_users=5, seed=4)).test


def test_test_fraction_applies_without_a_count():
    split = draw_users(POOL, None, UsersConfig(test_fraction=0.25))
    assert (len(split.train), len(split.test)) == (15, 5)


def test_separate_splits_keep_their_users():
    split = draw_users(POOL[:12], POOL[12:], UsersConfig(num_train_users=10, num_test_users=3))
    assert set(split.train) <= set(POOL[:12]) and len(split.train) == 10
    assert set(split.test) <= set(POOL[12:]) and len(split.test) == 3


@pytest.mark.parametrize("train, test, users, message", [
    (POOL, None, UsersConfig(num_test_users=20), r"num_test_users is 20, but there are only 19"),
    (POOL[:5], POOL[5:8], UsersConfig(num_test_users=4), r"only 3 users in the test split"),
    (POOL[:5], POOL[5:8], UsersConfig(num_train_users=6), r"num_train_users is 6, but .* only 5"),
    (POOL[:5], POOL[4:8], UsersConfig(), r"1 users are in both the train and the test split"),
])
def test_impossible_draws_say_what_to_change(train, test, users, message):
    with pytest.raises(ConfigError, match=message):
        draw_users(train, test, users)


def test_a_work_dir_is_prepared_once_and_guarded(tmp_path):
    cfg = tiny_job(tmp_path / "job", tmp_path / "encoder")
    dataset, split = prepare_users(cfg)
    assert len(dataset.users()) == 8 and (len(split.train), len(split.test)) == (6, 2)
    assert load_split(cfg) == split and prepare_users(cfg)[1] == split
    other = tiny_job(tmp_path / "job", tmp_path / "encoder", users={"num_test_users": 3})
    with pytest.raises(ConfigError, match="was prepared for other data/users settings"):
        prepare_users(other)


def test_a_pinned_split_is_read_as_drawn_without_a_new_dataset(tmp_path):
    # the guard's calibration job: the training users of one job as the new users of another
    cfg = tiny_job(tmp_path / "job", tmp_path / "encoder")
    dataset, split = prepare_users(cfg)
    other = tiny_job(tmp_path / "calibration", tmp_path / "encoder")
    pinned = pin_split(other, UserSplit(split.train, split.train, dataset=split.dataset))
    assert prepare_users(other)[1] == pinned == load_split(other)
    assert pinned.test == split.train and pinned.users("fit") == split.train
    assert prepare_users(other)[0].uri == dataset.uri
    assert not (tmp_path / "calibration" / "data" / "users").exists()
    assert pin_split(other, UserSplit(split.train, split.train, dataset=split.dataset)) == pinned
    with pytest.raises(ConfigError, match="holds another user split"):
        pin_split(other, UserSplit(split.train, split.test, dataset=split.dataset))


def test_shard_names_are_stable_and_keyed_by_their_inputs(tmp_path):
    cfg = tiny_job(tmp_path / "job", tmp_path / "encoder")
    users = [f"u{i}" for i in range(10)]
    cfg.labels.users_per_shard = 4
    shards = plan_shards(cfg, "reranker", "train", users)
    assert [len(s.users) for s in shards] == [4, 4, 2]
    assert plan_shards(cfg, "reranker", "train", list(reversed(users))) == shards
    assert plan_shards(cfg, "reranker", "fit", users)[0].name != shards[0].name
    assert plan_shards(cfg, "adapter", "train", users, retrieval="bm25")[0].name != \
        plan_shards(cfg, "adapter", "train", users, retrieval="rerank-x")[0].name
    cfg.labels.k_retrieve = 7
    assert plan_shards(cfg, "reranker", "train", users)[0].name != shards[0].name
    assert shards[0].uri.startswith(cfg.paths.labels_dir("reranker", "train"))


def test_a_setting_added_later_keys_shards_only_when_it_changes_the_rows(tmp_path):
    """Shards written before `adapter_greedy_candidate` existed keep their names at its default."""
    cfg = tiny_job(tmp_path / "job", tmp_path / "encoder")
    users = [f"u{i}" for i in range(4)]
    before = plan_shards(cfg, "adapter", "train", users)[0].name
    labels = settings_key(cfg, "adapter", "train")["labels"]
    assert "adapter_greedy_candidate" not in labels
    assert "adapter_best_candidate_positive" not in labels
    assert "adapter_bare_greedy_candidate" not in labels and "adapter_bare_samples" not in labels
    cfg.labels.adapter_greedy_candidate = True
    assert settings_key(cfg, "adapter", "train")["labels"]["adapter_greedy_candidate"] is True
    greedy = plan_shards(cfg, "adapter", "train", users)[0].name
    assert greedy != before
    cfg.labels.adapter_bare_samples = 2
    assert settings_key(cfg, "adapter", "train")["labels"]["adapter_bare_samples"] == 2
    assert plan_shards(cfg, "adapter", "train", users)[0].name not in (before, greedy)


def test_adapter_shards_are_keyed_by_the_pair_format(tmp_path, monkeypatch):
    """Shards of adapter pairs in another format (before c1e0897 the adapter read the prompt
    alone) are not reused: a new format writes new shards, and the manifest records it."""
    import training.label_store as label_store

    cfg = tiny_job(tmp_path / "job", tmp_path / "encoder")
    users = [f"u{i}" for i in range(4)]
    adapter = plan_shards(cfg, "adapter", "train", users)
    reranker = plan_shards(cfg, "reranker", "train", users)
    counts = {s.name: {"rows": 1, "positives": 0} for s in adapter + reranker}
    assert write_manifest(cfg, "adapter", "train", adapter, counts)["pairs"] == "query+prompt/1"
    assert "pairs" not in write_manifest(cfg, "reranker", "train", reranker, counts)
    monkeypatch.setattr(label_store, "ADAPTER_PAIRS", "another/2")
    assert plan_shards(cfg, "adapter", "train", users)[0].name != adapter[0].name
    assert plan_shards(cfg, "reranker", "train", users) == reranker
    assert settings_key(cfg, "adapter", "fit")["pairs"] == "another/2"
