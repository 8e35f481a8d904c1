"""Garbage collection on local disk: dry run by default, the grace period protects young files and
readers of superseded manifests, a reader keeps loading through collections, the CLI prints a
summary."""

from __future__ import annotations

import argparse
import os
import threading
import time

import pytest
import torch

from hydralm.artifacts import MANIFEST_KEY, Registry
from hydralm.artifacts.cli import parse_duration, register
from hydralm.artifacts.gc import collect, live_keys
from hydralm.model import HeadState

HOUR = 3600.0


def head(value: float, d: int = 4) -> HeadState:
    return HeadState(torch.full((d, d), value), torch.full((d,), value),
                     torch.full((d, 2), value), torch.full((2,), value))


@pytest.fixture()
def registry(tmp_path) -> Registry:
    registry = Registry(str(tmp_path / "reg"), shards=8)
    version = registry.publish_base({"w": torch.ones(2)}, {"name": "tiny"})
    registry.save_heads("reranker", {"u1": head(1.0), "u2": head(2.0)}, version)
    registry.save_head("reranker", "u1", head(3.0), version)      # u1's first file: garbage
    return registry


def files(registry: Registry) -> set[str]:
    return {k for k in registry.storage.list() if not k.startswith("gc/")}


def touch(registry: Registry, key: str, when: float) -> None:
    os.utime(registry.storage.root / key, (when, when))


def age_everything(registry: Registry, seconds: float) -> None:
    """Move every file's modification time `seconds` into the past."""
    for path in registry.storage.root.rglob("*"):
        if path.is_file():
            stat = path.stat()
            os.utime(path, (stat.st_atime - seconds, stat.st_mtime - seconds))


def test_a_dry_run_reports_and_deletes_nothing(registry):
    before = files(registry)
    report = collect(registry, grace_s=0.0)
    # garbage: u1's first head, the first shard of u1 (u2's shard too if they differ), a table
    garbage = before - live_keys(registry)[0]
    assert sorted(report.deletable) == sorted(garbage)
    assert any(k.startswith("heads/") for k in garbage) and any("/tables/" in k for k in garbage)
    assert files(registry) == before and not report.applied and report.deleted == 0
    assert "would delete" in report.summary() and f"{len(garbage)} files" in report.summary()


def test_apply_deletes_only_unreferenced_files_and_the_registry_stays_whole(registry):
    live = live_keys(registry)[0]
    report = collect(registry, grace_s=0.0, apply=True)
    assert report.deleted == len(report.deletable) > 0
    assert files(registry) == {k for k in live if registry.storage.exists(k)} == live
    assert registry.verify() == []
    assert registry.load_head("reranker", "u1").w1[0, 0] == 3.0
    assert collect(registry, grace_s=0.0, apply=True).deleted == 0      # nothing left


def test_young_files_are_kept_for_the_grace_period(registry):
    report = collect(registry, grace_s=HOUR, apply=True)
    assert report.deleted == 0 and report.deletable == [] and report.pending > 0
    # an hour later (by the storage's clock) they may go: every manifest naming them is that old
    later = collect(registry, grace_s=HOUR, apply=True, now=time.time() + HOUR + 5)
    assert later.deleted == report.pending and registry.verify() == []


def test_a_reader_of_a_recently_superseded_manifest_keeps_its_files(registry):
    """Old files, but the manifest that named them was superseded just now: kept until an
    earlier collection has seen them unreferenced for the whole grace period."""
    age_everything(registry, 2 * HOUR)
    held = registry.manifest()
    old_entry = registry.head_entry("reranker", "u2", held)
    registry.save_head("reranker", "u2", head(5.0), registry.base_version())   # supersedes
    first = collect(registry, grace_s=HOUR, apply=True)
    assert first.deleted == 0 and old_entry.key not in first.deletable
    reader = Registry(registry.storage.uri)
    assert registry.storage.exists(old_entry.key)
    assert reader.index.entry("reranker", held, "u2") == old_entry   # the old shard is there
    # an hour later, with a writer active (the manifest is young): marked an hour ago and
    # untouched since, so now they go
    now = time.time() + HOUR + 5
    touch(registry, MANIFEST_KEY, now - 60)
    second = collect(registry, grace_s=HOUR, apply=True, now=now)
    assert old_entry.key in second.deletable and not registry.storage.exists(old_entry.key)
    assert registry.load_head("reranker", "u2").w1[0, 0] == 5.0 and registry.verify() == []


def test_a_file_written_again_after_it_was_marked_is_not_deleted(registry):
    age_everything(registry, 2 * HOUR)
    rewritten = registry.head_entry("reranker", "u2").key
    registry.save_head("reranker", "u2", head(6.0), registry.base_version())
    start = time.time()
    marked = collect(registry, grace_s=HOUR, apply=True, now=start)
    assert marked.deleted == 0 and marked.pending >= 2
    untouched = next(k for k in files(registry) - live_keys(registry)[0] if k != rewritten)
    touch(registry, rewritten, start + HOUR / 2)      # a writer about to name these bytes again
    now = start + 2 * HOUR + 5
    touch(registry, MANIFEST_KEY, now - 60)           # and writers are active
    later = collect(registry, grace_s=HOUR, apply=True, now=now)
    assert untouched in later.deletable and not registry.storage.exists(untouched)
    assert rewritten not in later.deletable and registry.storage.exists(rewritten)


def test_a_reader_loads_heads_while_collections_run(registry):
    """A writer replaces heads and collections run with a short grace period while a reader
    loads: every load succeeds and returns one of the values written."""
    version, stop, errors, loads = registry.base_version(), threading.Event(), [], [0]
    reader = Registry(registry.storage.uri)

    def read() -> None:
        while not stop.is_set():
            try:
                for user in ("u1", "u2"):
                    assert reader.load_head("reranker", user).w1[0, 0] >= 1.0
                    loads[0] += 1
            except Exception as exc:  # collected and asserted below
                errors.append(exc)
                return

    thread = threading.Thread(target=read)
    thread.start()
    try:
        deleted, i, deadline = 0, 0, time.monotonic() + 60
        while i < 15 or (deleted == 0 and time.monotonic() < deadline):   # until files went
            registry.save_heads("reranker", {"u1": head(10.0 + i), "u2": head(50.0 + i)},
                                version)
            deleted += collect(registry, grace_s=2.0, apply=True).deleted
            i += 1
            time.sleep(0.25)     # lets files age past the short grace period
    finally:
        stop.set()
        thread.join(timeout=60)
    assert not errors and loads[0] > 0 and deleted > 0
    assert registry.verify() == []
    assert registry.load_head("reranker", "u2").w1[0, 0] == 50.0 + i - 1


def test_the_cli_runs_a_dry_run_then_applies(registry, capsys):
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["registry", "gc", registry.storage.uri, "--grace", "0s"])
    assert args.func(args) == 0
    assert "would delete" in capsys.readouterr().out
    args = parser.parse_args(["registry", "gc", registry.storage.uri, "--grace", "0", "--apply"])
    assert args.func(args) == 0 and "deleted" in capsys.readouterr().out
    assert registry.verify() == [] and collect(registry, grace_s=0.0).deletable == []


@pytest.mark.parametrize("text, seconds", [("90", 90.0), ("90s", 90.0), ("15m", 900.0),
                                           ("6h", 21600.0), ("2d", 172800.0), ("0.5s", 0.5)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "-1h", "6 hours", "h"])
def test_bad_durations_are_refused(text):
    with pytest.raises(argparse.ArgumentTypeError, match=repr(text)):
        parse_duration(text)


def test_hydralm_registry_is_a_subcommand_of_the_hydralm_command(registry, capsys):
    from hydralm.cli import main

    assert main(["registry", "gc", registry.storage.uri, "--grace", "0s"]) == 0
    assert "would delete" in capsys.readouterr().out
