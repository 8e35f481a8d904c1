"""The job's users: the configured source as one Parquet dataset, and the train/new-user split.

Done once per work dir, on the driver: later stages (and re-runs) read `<work_dir>/data/`. The
split file records a fingerprint of the data and user settings, so a work dir prepared for other
settings is refused instead of silently mixing two runs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pyarrow.fs as pafs

from hydralm.data import Dataset, find_lamp_files, load_lamp, synthesize, write_dataset
from hydralm.data.fs import filesystem_for
from hydralm.data.schema import LampRecord
from hydralm.errors import ConfigError, NotFoundError
from hydralm.jobconfig import JobConfig, UsersConfig
from training.files import exists, read_json, write_json

__all__ = ["UserSplit", "draw_users", "load_split", "pin_split", "prepare_users"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UserSplit:
    """Training users (base + their heads) and new users (heads fitted from history only)."""

    train: tuple[str, ...]
    test: tuple[str, ...]
    fingerprint: str = ""
    dataset: str = ""

    def users(self, stage: str) -> tuple[str, ...]:
        if stage not in ("train", "fit"):
            raise ValueError(f"stage must be 'train' or 'fit', got {stage!r}")
        return self.train if stage == "train" else self.test


def draw_users(train_pool: Sequence[str], test_pool: Sequence[str] | None,
               cfg: UsersConfig) -> UserSplit:
    """Draw training and new users reproducibly (by cfg.seed).

    `test_pool` None: one pool, split by num_test_users (or test_fraction). Otherwise new users
    come from `test_pool` and training users from `train_pool`, which must not overlap.
    """
    rng = random.Random(cfg.seed)
    if test_pool is None:
        pool = sorted(set(train_pool))
        rng.shuffle(pool)
        n_test = cfg.num_test_users
        if n_test is None:
            n_test = max(1, round(len(pool) * cfg.test_fraction))
        _check_count("num_test_users", n_test, len(pool) - 1, "users in the pool (one at least "
                     "must stay a training user)")
        test, rest = pool[:n_test], pool[n_test:]
    else:
        overlap = sorted(set(train_pool) & set(test_pool))
        if overlap:
            raise ConfigError(f"{len(overlap)} users are in both the train and the test split, "
                              f"first {overlap[0]!r}: the splits must hold different users")
        test = sorted(set(test_pool))
        rng.shuffle(test)
        n_test = len(test) if cfg.num_test_users is None else cfg.num_test_users
        _check_count("num_test_users", n_test, len(test), "users in the test split")
        test = test[:n_test]
        rest = sorted(set(train_pool))
        rng.shuffle(rest)
    n_train = len(rest) if cfg.num_train_users is None else cfg.num_train_users
    _check_count("num_train_users", n_train, len(rest), "training users available")
    return UserSplit(train=tuple(sorted(rest[:n_train])), test=tuple(sorted(test)))


def _check_count(name: str, wanted: int, available: int, what: str) -> None:
    if wanted > available:
        raise ConfigError(f"users.{name} is {wanted}, but there are only {available} {what}; "
                          f"lower users.{name}")


def _fingerprint(cfg: JobConfig) -> str:
    payload = {"task": cfg.task, "data": cfg.data.model_dump(mode="json"),
               "users": cfg.users.model_dump(mode="json")}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _source_records(cfg: JobConfig) -> tuple[list[LampRecord], set[str] | None]:
    """All records of the configured source and, when it has one, the test split's users."""
    data, task = cfg.data, cfg.task
    if data.synth is not None:
        s = data.synth
        return synthesize(task, s.users, s.seed, queries_per_user=s.queries_per_user,
                          items_per_user=s.items_per_user), None
    if data.questions is not None:
        return load_lamp(data.questions, data.outputs, task=task), None
    train_files = find_lamp_files(data.lamp_dir, task, data.train_split)
    if train_files.outputs is None:
        raise ConfigError(f"the {data.train_split} split in {data.lamp_dir} has no outputs file: "
                          "training users need golds")
    records = load_lamp(train_files.questions, train_files.outputs, task=task)
    if data.test_split is None:
        return records, None
    # New users' golds, when present, are kept for evaluation; label building never reads them.
    test_files = find_lamp_files(data.lamp_dir, task, data.test_split)
    test_records = load_lamp(test_files.questions, test_files.outputs, task=task)
    return records + test_records, {r.user_id for r in test_records}


def prepare_users(cfg: JobConfig) -> tuple[Dataset, UserSplit]:
    """The job's dataset and split, made on first use and reused (and checked) afterwards."""
    paths = cfg.paths
    fingerprint = _fingerprint(cfg)
    existing = _read_split(paths.split_file)
    if existing is not None:
        if existing.fingerprint != fingerprint:
            raise ConfigError(
                f"{paths.work_dir} was prepared for other data/users settings (fingerprint "
                f"{existing.fingerprint}, this config {fingerprint}); use another work_dir or "
                "delete that one")
        return Dataset(existing.dataset), existing
    if cfg.data.parquet is not None:
        dataset, test_users = Dataset(cfg.data.parquet), None
    else:
        records, test_users = _source_records(cfg)
        _reset_dataset_dir(paths.dataset)
        write_dataset(records, paths.dataset, task=cfg.task, progress=False)
        dataset = Dataset(paths.dataset)
    if dataset.task != cfg.task:
        raise ConfigError(f"data.parquet holds {dataset.task!r} records, but task is {cfg.task!r}")
    everyone = dataset.users()
    train_pool = [u for u in everyone if test_users is None or u not in test_users]
    split = draw_users(train_pool, sorted(test_users) if test_users is not None else None,
                       cfg.users)
    split = UserSplit(split.train, split.test, fingerprint, dataset.uri)
    _write_split(paths.split_file, split)
    log.info("prepared %d training users and %d new users in %s", len(split.train),
             len(split.test), dataset.uri)
    return dataset, split


def pin_split(cfg: JobConfig, split: UserSplit) -> UserSplit:
    """Give `cfg`'s work dir the users of `split` (its dataset, not a new draw): later stages
    read it as if `prepare_users` had drawn it. A work dir already holding this split is left as
    it is; one holding another is refused."""
    pinned = UserSplit(split.train, split.test, _fingerprint(cfg), split.dataset)
    existing = _read_split(cfg.paths.split_file)
    if existing is not None and existing != pinned:
        raise ConfigError(f"{cfg.paths.work_dir} holds another user split; use another work_dir "
                          "or delete that one")
    if existing is None:
        _write_split(cfg.paths.split_file, pinned)
    return pinned


def load_split(cfg: JobConfig) -> UserSplit:
    """The split `prepare_users` wrote; NotFoundError when the work dir was never prepared."""
    split = _read_split(cfg.paths.split_file)
    if split is None:
        raise NotFoundError(f"no user split in {cfg.paths.work_dir}: run `hydralm labels` first")
    return split


def _reset_dataset_dir(uri: str) -> None:
    """Remove a dataset left without its split file by an interrupted first run."""
    fs, path = filesystem_for(uri)
    if fs.get_file_info(path).type == pafs.FileType.Directory:
        fs.delete_dir(path)


def _read_split(uri: str) -> UserSplit | None:
    if not exists(uri):
        return None
    doc = read_json(uri)
    return UserSplit(train=tuple(doc["train"]), test=tuple(doc["test"]),
                     fingerprint=doc["fingerprint"], dataset=doc["dataset"])


def _write_split(uri: str, split: UserSplit) -> None:
    write_json(uri, {"fingerprint": split.fingerprint, "dataset": split.dataset,
                     "train": list(split.train), "test": list(split.test)})


def chunked(users: Iterable[str], size: int) -> list[tuple[str, ...]]:
    """Consecutive groups of `size` users (the last may be smaller)."""
    items = list(users)
    return [tuple(items[i:i + size]) for i in range(0, len(items), size)]
