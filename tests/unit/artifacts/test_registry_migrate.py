"""`hydralm registry migrate`: a registry of the single-index layout (hydralm-registry/1, written
here file by file as the earlier version wrote it) is converted in place, idempotently, and a
writer of the old layout racing the conversion loses nothing."""

from __future__ import annotations

import argparse
import json

import pytest
import torch

from hydralm.artifacts import MANIFEST_KEY, LocalStorage, Registry, encode_head
from hydralm.artifacts.cli import register
from hydralm.artifacts.gc import collect
from hydralm.artifacts.migrate import migrate
from hydralm.artifacts.serialize import encode_tensors, sha256
from hydralm.errors import ArtifactError
from hydralm.model import HeadState

BASE = "0123456789abcdef"
NOW = "2026-01-01T00:00:00.000+00:00"


def head(value: float, d: int = 4) -> HeadState:
    return HeadState(torch.full((d, d), value), torch.full((d,), value),
                     torch.full((d, 2), value), torch.full((2,), value))


def put(storage: LocalStorage, key: str, data: bytes) -> dict:
    storage.put(key, data)
    return {"key": key, "sha256": sha256(data)}


def head_entry(storage, kind, user, value) -> dict:
    data = encode_head(head(value), kind=kind, user_id=user, base_version=BASE)
    ref = put(storage, f"heads/{kind}/{sha256(user.encode())}/{sha256(data)[:16]}.safetensors",
              data)
    return {**ref, "base_version": BASE, "updated_at": NOW}


def write_v1(storage: LocalStorage, users: dict[str, float], version: int = 5) -> None:
    """A hydralm-registry/1 registry: base, a global head, one index file for the reranker."""
    model = put(storage, f"bases/{BASE}/model.safetensors", encode_tensors({"w": torch.ones(2)}))
    config = put(storage, f"bases/{BASE}/config.json", b'{"name": "tiny"}')
    heads = {user: head_entry(storage, "reranker", user, v) for user, v in users.items()}
    index = json.dumps({"format": "hydralm-head-index/1", "kind": "reranker",
                        "heads": heads}).encode()
    index_ref = put(storage, f"index/reranker/{sha256(index)}.json", index)
    manifest = {"format": "hydralm-registry/1", "version": version, "base_version": BASE,
                "created_at": NOW, "updated_at": NOW,
                "bases": {BASE: {"version": BASE, "model": model, "config": config,
                                 "created_at": NOW}},
                "global_heads": {"reranker": head_entry(storage, "reranker", "<global>", 9.0)},
                "head_index": {"reranker": {**index_ref, "count": len(heads)}}}
    storage.put(MANIFEST_KEY, json.dumps(manifest).encode())


USERS = {f"user{i}": float(i) for i in range(1, 40)}


@pytest.fixture()
def storage(tmp_path) -> LocalStorage:
    storage = LocalStorage(tmp_path / "old")
    write_v1(storage, USERS)
    return storage


def test_migrate_converts_every_head_and_keeps_bases_and_global_heads(storage):
    report = migrate(Registry(storage, shards=8))
    assert report.heads == {"reranker": len(USERS)} and report.manifest_version == 6
    registry = Registry(storage)
    manifest = registry.manifest()
    assert manifest.shards == 8 and manifest.base_version == BASE and manifest.version == 6
    assert registry.list_users("reranker") == sorted(USERS)
    assert registry.head_count("reranker") == len(USERS)
    assert registry.load_head("reranker", "user7").w1[0, 0] == 7.0
    assert registry.load_global_head("reranker").w1[0, 0] == 9.0
    assert registry.load_base()[1] == {"name": "tiny"} and registry.verify() == []
    registry.save_head("reranker", "user40", head(40.0), BASE)      # writable as /2
    assert registry.load_head("reranker", "user40").w1[0, 0] == 40.0


def test_migrate_is_idempotent_and_a_no_op_on_new_or_empty_registries(storage, tmp_path):
    migrate(Registry(storage, shards=8))
    again = migrate(Registry(storage))
    assert again.found_format == "hydralm-registry/2" and "nothing to migrate" in again.summary()
    assert migrate(Registry(str(tmp_path / "empty"))).found_format is None


def test_the_old_index_is_garbage_after_the_migration(storage):
    old_index = storage.list("index/reranker/")[0]
    migrate(Registry(storage, shards=8))
    report = collect(Registry(storage), grace_s=0.0, apply=True)
    assert old_index in report.deletable and not storage.exists(old_index)
    assert Registry(storage).verify() == []


class RacingV1Writer(LocalStorage):
    """An old-version writer commits a new /1 manifest (one more head) right before the
    migration's compare-and-swap, once."""

    raced = False

    def put_if(self, key, data, token):
        if key == MANIFEST_KEY and not self.raced:
            self.raced = True
            write_v1(LocalStorage(self.root), {**USERS, "late": 77.0}, version=6)
        super().put_if(key, data, token)


def test_a_racing_old_writer_makes_the_migration_start_over(tmp_path):
    storage = RacingV1Writer(tmp_path / "old")
    write_v1(storage, USERS)
    report = migrate(Registry(storage, shards=8))
    assert storage.raced and report.manifest_version == 7
    assert Registry(storage).load_head("reranker", "late").w1[0, 0] == 77.0


def test_a_corrupt_old_index_stops_the_migration(storage):
    key = storage.list("index/reranker/")[0]
    storage.put(key, storage.get(key)[:-3])
    with pytest.raises(ArtifactError, match="checksum mismatch"):
        migrate(Registry(storage))
    assert json.loads(storage.get(MANIFEST_KEY))["format"] == "hydralm-registry/1"


def test_the_cli_migrates(storage, capsys):
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["registry", "migrate", storage.uri, "--shards", "4"])
    assert args.func(args) == 0
    assert "converted hydralm-registry/1 -> hydralm-registry/2" in capsys.readouterr().out
    assert Registry(storage).manifest().shards == 4
