"""The Parquet dataset: round trips, one-bucket reads, atomic writes, and the errors a reader sees."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from hydralm.data import (
    Dataset,
    find_lamp_files,
    load_lamp,
    synthesize,
    user_bucket,
    write_dataset,
)
from hydralm.data.schema import LampRecord
from hydralm.errors import ArtifactError, DataValidationError, NotFoundError


class _RecordingHandler(pafs.FileSystemHandler):
    """A local filesystem that remembers every file opened for reading."""

    def __init__(self) -> None:
        self.fs = pafs.LocalFileSystem()
        self.opened: list[str] = []

    def get_type_name(self):
        return "recording"

    def equals(self, other):
        return other is self

    def normalize_path(self, path):
        return path

    def get_file_info(self, paths):
        return self.fs.get_file_info(paths)

    def get_file_info_selector(self, selector):
        return self.fs.get_file_info(selector)

    def open_input_stream(self, path):
        self.opened.append(path)
        return self.fs.open_input_stream(path)

    def open_input_file(self, path):
        self.opened.append(path)
        return self.fs.open_input_file(path)

    def _read_only(self, *args, **kwargs):
        raise NotImplementedError("read-only in this test")

    create_dir = delete_dir = delete_dir_contents = delete_root_dir_contents = _read_only
    delete_file = move = copy_file = open_output_stream = open_append_stream = _read_only


def _by_id(records) -> dict[str, LampRecord]:
    return {r.id: r for r in records}


def test_round_trip_real_lamp(lamp_dir, tmp_path):
    records = load_lamp(*find_lamp_files(lamp_dir, "LaMP-2N", "train"), task="LaMP-2N")
    meta = write_dataset(records, tmp_path / "ds", task="LaMP-2N", progress=False)
    assert meta["num_users"] == 4 and meta["num_queries"] == 4 and meta["num_items"] == 58
    ds = Dataset(tmp_path / "ds")
    assert ds.task == "LaMP-2N" and ds.meta == meta
    assert ds.users() == ["100", "101", "102", "103"]
    assert ds.queries() == [LampRecord(r.id, r.user_id, r.input, (), r.gold) for r in records]
    assert ds.queries("101") == [LampRecord("101", "101", records[1].input, (), records[1].gold)]
    assert ds.profile("102") == records[2].profile
    assert _by_id(ds.records()) == _by_id(records)
    assert ds.summary()["items_per_user"] == {"min": 4, "median": 18, "max": 18}


def test_round_trip_many_users_several_chunks(tmp_path):
    records = synthesize("synth-title", 40, seed=3, queries_per_user=3, items_per_user=7)
    meta = write_dataset(iter(records), tmp_path / "ds", task="synth-title", progress=False,
                         chunk_rows=50, num_buckets=4)
    assert (meta["num_users"], meta["num_items"], meta["num_queries"]) == (40, 280, 120)
    ds = Dataset(tmp_path / "ds")
    got = list(ds.records())
    assert _by_id(got) == _by_id(records) and len(got) == len(records)
    for bucket in range(4):  # each bucket compacted into one file
        files = sorted((tmp_path / "ds" / "profile" / f"bucket={bucket}").iterdir())
        assert [f.name for f in files] == ["part-0.parquet"]
    assert ds.profile("u0017") == records[17 * 3].profile
    assert [q.id for q in ds.queries("u0005")] == ["u0005-q0", "u0005-q1", "u0005-q2"]


def test_reading_one_user_opens_only_their_bucket(tmp_path):
    records = synthesize("synth-tag", 30, seed=1, queries_per_user=1, items_per_user=5)
    write_dataset(records, tmp_path / "ds", task="synth-tag", progress=False)
    handler = _RecordingHandler()
    ds = Dataset(str(tmp_path / "ds"), filesystem=pafs.PyFileSystem(handler))
    ds.users()  # reads users.parquet
    handler.opened.clear()
    user = "u0011"
    assert ds.profile(user) == records[11].profile
    bucket_dir = f"{tmp_path}/ds/profile/bucket={user_bucket(user)}/"
    assert handler.opened, "the profile read opened no file"
    assert all(p.startswith(bucket_dir) for p in handler.opened), handler.opened
    other_buckets = {user_bucket(r.user_id) for r in records} - {user_bucket(user)}
    assert other_buckets, "the test needs users in other buckets"


def _failing(records, after: int):
    for i, rec in enumerate(records):
        if i == after:
            raise RuntimeError("source failed mid-stream")
        yield rec


def test_failed_write_leaves_nothing(tmp_path):
    records = synthesize("synth-tag", 10, seed=0, items_per_user=3)
    with pytest.raises(RuntimeError, match="mid-stream"):
        write_dataset(_failing(records, 25), tmp_path / "ds", task="synth-tag", progress=False,
                      chunk_rows=10)
    assert list(tmp_path.iterdir()) == []  # no target, no staging directory left behind
    with pytest.raises(NotFoundError, match="meta.json is missing"):
        Dataset(tmp_path / "ds")


def test_existing_target_needs_overwrite_and_a_failed_overwrite_keeps_the_old(tmp_path):
    first = synthesize("synth-tag", 2, seed=0)
    write_dataset(first, tmp_path / "ds", task="synth-tag", progress=False)
    with pytest.raises(ArtifactError, match="already exists"):
        write_dataset(first, tmp_path / "ds", task="synth-tag", progress=False)
    second = synthesize("synth-tag", 3, seed=1)
    with pytest.raises(RuntimeError):
        write_dataset(_failing(second, 5), tmp_path / "ds", task="synth-tag", progress=False,
                      overwrite=True)
    assert Dataset(tmp_path / "ds").users() == ["u0000", "u0001"]
    write_dataset(second, tmp_path / "ds", task="synth-tag", progress=False, overwrite=True)
    assert Dataset(tmp_path / "ds").users() == ["u0000", "u0001", "u0002"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


def test_same_user_with_another_profile_is_rejected(tmp_path):
    a, b = synthesize("synth-tag", 2, seed=0, queries_per_user=1)
    clash = LampRecord(id="x", user_id=a.user_id, input=b.input, profile=b.profile)
    with pytest.raises(DataValidationError, match="record 1, field 'profile'.*different"):
        write_dataset([a, clash], tmp_path / "ds", task="synth-tag", progress=False)
    assert not (tmp_path / "ds").exists()


def test_reader_errors(tmp_path):
    write_dataset(synthesize("synth-tag", 2, seed=0), tmp_path / "ds", task="synth-tag",
                  progress=False)
    ds = Dataset(tmp_path / "ds")
    with pytest.raises(NotFoundError, match="'u9999'"):
        ds.profile("u9999")
    with pytest.raises(NotFoundError, match="'u9999'"):
        ds.queries("u9999")
    meta_path = Path(tmp_path / "ds" / "meta.json")
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "format_version": 99}))
    with pytest.raises(DataValidationError, match="version 99"):
        Dataset(tmp_path / "ds")


@pytest.mark.parametrize("kwargs, error", [
    ({"task": "LaMP-8"}, "unknown task"),
    ({"task": "LaMP-1", "num_buckets": 0}, "num_buckets"),
])
def test_write_argument_errors(tmp_path, kwargs, error):
    with pytest.raises(ValueError, match=error):
        write_dataset([], tmp_path / "ds", progress=False, **kwargs)
