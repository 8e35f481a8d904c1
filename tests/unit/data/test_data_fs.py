"""Local paths and s3:// URIs resolve to pyarrow filesystems; s3:// ones from hydralm.s3."""

from __future__ import annotations

import pyarrow.fs as pafs
import pytest

from hydralm.data.fs import (
    filesystem_for,
    is_remote,
    join_uri,
    open_input_stream,
    open_output_stream,
)
from hydralm.errors import NotFoundError
from hydralm.s3 import arrow_filesystem


def test_local_paths_become_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fs, path = filesystem_for("data/x.json")
    assert isinstance(fs, pafs.LocalFileSystem)
    assert path == str(tmp_path / "data" / "x.json")
    assert filesystem_for(f"file://{tmp_path}/y")[1] == f"{tmp_path}/y"


def test_local_write_then_read(tmp_path):
    uri = join_uri(str(tmp_path), "deep", "dir", "f.bin")
    with open_output_stream(uri) as out:
        out.write(b"abc")
    with open_input_stream(uri) as f:
        assert f.read() == b"abc"
    with pytest.raises(NotFoundError, match="no such file"):
        open_input_stream(tmp_path / "missing.bin")


def test_s3_uri_uses_the_configured_endpoint(monkeypatch):
    """No server here: only that s3:// resolves to an S3FileSystem with the override (no I/O)."""
    monkeypatch.setenv("HYDRALM_S3_ENDPOINT", "http://127.0.0.1:8333")
    fs, path = filesystem_for("s3://bucket/prefix/data.json")
    assert is_remote("s3://bucket/prefix/data.json") and not is_remote("/tmp/s3://x")
    assert path == "bucket/prefix/data.json"
    assert isinstance(fs, pafs.S3FileSystem)
    assert fs.equals(arrow_filesystem("bucket"))
    monkeypatch.setenv("HYDRALM_S3_ENDPOINT", "http://127.0.0.1:9")
    assert not fs.equals(arrow_filesystem("bucket"))
    assert join_uri("s3://bucket/prefix/", "profile", "/bucket=3/") == \
        "s3://bucket/prefix/profile/bucket=3"
