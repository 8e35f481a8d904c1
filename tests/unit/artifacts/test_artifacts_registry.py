"""Registry on local disk: round trips, verification, crash consistency and concurrent writers."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time

import pytest
import torch

from hydralm.artifacts import (
    MANIFEST_KEY,
    LocalStorage,
    Registry,
    decode_head,
    encode_head,
)
from hydralm.errors import ArtifactError, NotFoundError, StaleHeadError
from hydralm.model import HeadState

D = 4
WEIRD_USERS = ["../x", "a/b", "/etc/passwd", "a\x00b", "..", "C:\\x", "ü ser", "x" * 1000]


def head(value: float, d: int = D) -> HeadState:
    """A head whose every weight is `value`: easy to tell apart after a round trip."""
    return HeadState(torch.full((d, d), value), torch.full((d,), value),
                     torch.full((d, 2), value), torch.full((2,), value))


def same(a: HeadState, b: HeadState) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.tensors().values(), b.tensors().values(),
                                                   strict=True))


@pytest.fixture()
def registry(tmp_path) -> Registry:
    return Registry(str(tmp_path / "reg"))


@pytest.fixture()
def base(registry) -> str:
    return registry.publish_base({"layer.weight": torch.arange(6.0).view(2, 3)}, {"name": "tiny"})


def test_round_trip_of_base_heads_and_global_head(registry, base):
    assert registry.manifest_version() == 1 and registry.base_version() == base
    registry.save_heads("reranker", {"u1": head(1.0), "u2": head(2.0)}, base)
    registry.save_head("adapter", "u1", head(3.0), base)
    registry.save_global_head("reranker", head(9.0), base)
    assert registry.manifest_version() == 4
    assert same(registry.load_head("reranker", "u2"), head(2.0))
    assert same(registry.load_head("adapter", "u1"), head(3.0))
    assert same(registry.load_global_head("reranker"), head(9.0))
    assert registry.list_users("reranker") == ["u1", "u2"] and registry.list_users("adapter") == ["u1"]
    assert registry.has_head("reranker", "u1") and not registry.has_head("adapter", "u2")
    state, config = registry.load_base()
    assert torch.equal(state["layer.weight"], torch.arange(6.0).view(2, 3))
    assert config == {"name": "tiny"}
    assert registry.verify() == []


def test_a_fresh_registry_reads_as_empty(registry):
    assert registry.manifest_version() == 0 and registry.base_version() is None
    assert registry.list_users("reranker") == []
    with pytest.raises(NotFoundError, match="no base has been published"):
        registry.load_base()


def test_saving_a_head_again_replaces_it_and_keeps_the_others(registry, base):
    registry.save_heads("reranker", {"u1": head(1.0), "u2": head(2.0)}, base)
    registry.save_head("reranker", "u1", head(5.0), base)
    assert same(registry.load_head("reranker", "u1"), head(5.0))
    assert same(registry.load_head("reranker", "u2"), head(2.0))


def test_saving_no_heads_changes_nothing(registry, base):
    assert registry.save_heads("reranker", {}, base) == 1 == registry.manifest_version()


def test_base_version_is_a_content_hash(registry, base):
    again = registry.publish_base({"layer.weight": torch.arange(6.0).view(2, 3)}, {"name": "tiny"})
    other = registry.publish_base({"layer.weight": torch.zeros(2, 3)}, {"name": "tiny"})
    assert again == base and other != base and registry.base_version() == other


@pytest.mark.parametrize("user_id", WEIRD_USERS)
def test_any_user_id_round_trips_and_stays_under_heads(registry, base, tmp_path, user_id):
    registry.save_head("reranker", user_id, head(4.0), base)
    assert same(registry.load_head("reranker", user_id), head(4.0))
    assert registry.list_users("reranker") == [user_id]
    files = [p.relative_to(tmp_path / "reg").as_posix()
             for p in (tmp_path / "reg").rglob("*") if p.is_file()]
    heads = [f for f in files if f.startswith("heads/reranker/")]
    assert len(heads) == 1 and len(heads[0].split("/")) == 5
    assert all(f.split("/")[0] in {"heads", "index", "bases", MANIFEST_KEY, ".lock"} for f in files)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reg"]


def test_unknown_user_and_kind(registry, base):
    with pytest.raises(NotFoundError, match="no reranker head for user 'nobody'"):
        registry.load_head("reranker", "nobody")
    with pytest.raises(NotFoundError, match="no global adapter head"):
        registry.load_global_head("adapter")
    with pytest.raises(ValueError, match="got 'ranker'"):
        registry.save_head("ranker", "u1", head(1.0), base)


def test_a_tampered_head_file_fails_its_checksum(registry, base):
    registry.save_heads("reranker", {"u1": head(1.0), "u2": head(2.0)}, base)
    key = registry.head_index("reranker")["u1"].key
    data = bytearray(registry.storage.get(key))
    data[-1] ^= 0xFF
    registry.storage.put(key, bytes(data))
    with pytest.raises(ArtifactError, match=r"reranker head of user 'u1': checksum mismatch"):
        registry.load_head("reranker", "u1")
    assert same(registry.load_head("reranker", "u2"), head(2.0))
    problems = registry.verify()
    assert len(problems) == 1 and "'u1'" in problems[0]


def test_a_head_file_checks_its_own_tensors():
    data = bytearray(encode_head(head(1.0), kind="reranker", user_id="u", base_version="b"))
    assert same(decode_head(bytes(data), "here").state, head(1.0))
    data[-1] ^= 0xFF
    with pytest.raises(ArtifactError, match="here: tensor checksum"):
        decode_head(bytes(data), "here")


@pytest.mark.parametrize("target", ["table", "shard", "manifest", "base"])
def test_tampered_index_manifest_or_base_is_an_artifact_error(registry, base, target):
    registry.save_head("reranker", "u1", head(1.0), base)
    manifest = registry.manifest()
    key = {"table": manifest.head_tables["reranker"].key, "manifest": MANIFEST_KEY,
           "shard": registry.storage.list("index/reranker/shards/")[0],
           "base": manifest.bases[base].model.key}[target]
    registry.storage.put(key, registry.storage.get(key)[:-5])
    fresh = Registry(registry.storage.uri)          # no cached table or shard
    load = fresh.load_base if target == "base" else (lambda: fresh.load_head("reranker", "u1"))
    with pytest.raises(ArtifactError, match="checksum mismatch|not a valid"):
        load()


def test_a_head_of_an_older_base_is_refused_with_both_versions(registry, base):
    registry.save_head("reranker", "u1", head(1.0), base)
    newer = registry.publish_base({"layer.weight": torch.ones(2, 3)}, {"name": "newer"})
    with pytest.raises(StaleHeadError) as info:
        registry.load_head("reranker", "u1")
    # an artifact error, and for the current base "no head" (serving uses the global head)
    assert isinstance(info.value, ArtifactError) and isinstance(info.value, NotFoundError)
    message = str(info.value)
    assert "reranker head of user 'u1'" in message
    assert f"fitted on base {base!r}" in message and f"current base is {newer!r}" in message


@pytest.mark.parametrize("save", [
    lambda r, v: r.save_head("reranker", "u1", head(1.0), v),
    lambda r, v: r.save_global_head("adapter", head(1.0), v),
])
def test_saving_heads_for_a_base_that_is_not_current_is_refused(registry, base, save):
    registry.publish_base({"layer.weight": torch.ones(2, 3)}, {"name": "newer"})
    with pytest.raises(ArtifactError, match=f"fitted on base '{base}'"):
        save(registry, base)


class CrashBeforeManifest(LocalStorage):
    """Dies right before the manifest write, after every head and index file is written."""

    def put_if(self, key, data, token):
        raise RuntimeError("simulated crash before the manifest write")


def test_a_crash_before_the_manifest_leaves_the_old_manifest_consistent(registry, base):
    registry.save_heads("reranker", {"u1": head(1.0)}, base)
    before = registry.manifest()
    crashing = Registry(CrashBeforeManifest(registry.storage.uri))
    with pytest.raises(RuntimeError, match="simulated crash"):
        crashing.save_heads("reranker", {"u1": head(7.0), "u3": head(3.0)}, base)
    assert len(registry.storage.list("heads/")) == 3          # the new files are there: orphans
    assert registry.manifest() == before and registry.verify() == []
    assert same(registry.load_head("reranker", "u1"), head(1.0))
    with pytest.raises(NotFoundError):
        registry.load_head("reranker", "u3")


def test_concurrent_writer_threads_lose_no_head(tmp_path, base, registry):
    writers, per_writer = 8, 6
    barrier = threading.Barrier(writers)
    errors = []

    def write(w: int) -> None:
        mine = Registry(registry.storage.uri)                  # own instance, like a worker
        barrier.wait(timeout=30)
        try:
            for batch in range(2):
                users = {f"w{w}-u{batch}-{i}": head(w * 100 + batch * 10 + i)
                         for i in range(per_writer // 2)}
                mine.save_heads("reranker", users, base)
        except Exception as exc:  # collected and asserted below: a thread cannot fail the test
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    users = registry.list_users("reranker")
    assert len(users) == writers * per_writer
    assert same(registry.load_head("reranker", "w3-u1-2"), head(312.0))
    assert registry.manifest_version() == 1 + writers * 2      # every update committed once
    assert registry.verify() == []


WRITER_SCRIPT = textwrap.dedent("""
    import sys, time, pathlib, torch
    from hydralm.artifacts import Registry
    from hydralm.model import HeadState
    root, name, base, go = sys.argv[1], sys.argv[2], sys.argv[3], pathlib.Path(sys.argv[4])
    registry = Registry(root)
    pathlib.Path(go.parent / f"ready-{name}").touch()
    deadline = time.monotonic() + 120
    while not go.exists():
        if time.monotonic() > deadline:
            sys.exit("no go signal")
        time.sleep(0.01)
    for batch in range(3):
        registry.save_heads("adapter", {f"{name}-{batch}-{i}": HeadState(
            torch.zeros(4, 4), torch.zeros(4), torch.zeros(4, 2), torch.zeros(2))
            for i in range(5)}, base)
""")


def test_concurrent_writer_processes_lose_no_head(tmp_path, registry, base):
    sync = tmp_path / "sync"
    sync.mkdir()
    names = ["p0", "p1"]
    procs = [subprocess.Popen([sys.executable, "-c", WRITER_SCRIPT, registry.storage.uri, name,
                               base, str(sync / "go")]) for name in names]
    try:
        deadline = time.monotonic() + 120
        while len(list(sync.glob("ready-*"))) < len(names):   # every process imported torch
            assert time.monotonic() < deadline and all(p.poll() is None for p in procs)
            time.sleep(0.05)
        (sync / "go").touch()
        codes = [p.wait(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert codes == [0, 0]
    assert len(registry.list_users("adapter")) == 2 * 3 * 5
    assert registry.manifest_version() == 1 + 2 * 3 and registry.verify() == []


def test_head_entries_record_the_history_version_they_were_fitted_on(registry, base):
    registry.save_heads("reranker", {"u1": head(1.0), "u2": head(2.0)}, base,
                        history_versions={"u1": 7})
    assert registry.head_entry("reranker", "u1").history_version == 7
    assert registry.head_entry("reranker", "u2").history_version is None
    assert registry.head_entry("reranker", "nobody") is None
    entries = dict(registry.iter_head_entries("reranker"))
    assert sorted(entries) == ["u1", "u2"] and entries["u1"].base_version == base
    with pytest.raises(ValueError, match="'u9'"):
        registry.save_heads("reranker", {"u1": head(1.0)}, base, history_versions={"u9": 1})
