"""hydralm.atomic.write_atomic, the one whole-file writer: a reader sees the old bytes or the new
bytes, never a part, whatever happens to the writer (an exception, or a process killed between
the write and the rename), and both the file and its directory entry are fsynced."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from hydralm import atomic
from hydralm.atomic import TMP_PREFIX, write_atomic

OLD, NEW = b"o" * 1_000_000, b"n" * 1_000_000


def test_write_creates_parents_replaces_and_returns_the_path(tmp_path):
    target = tmp_path / "a" / "b" / "f.json"
    assert write_atomic(target, b"one") == target and target.read_bytes() == b"one"
    write_atomic(str(target), memoryview(b"two"))
    assert target.read_bytes() == b"two"
    assert sorted(p.name for p in target.parent.iterdir()) == ["f.json"]   # no temp file left
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o644 & ~umask


def test_file_then_directory_are_fsynced_around_the_rename(tmp_path, monkeypatch):
    target = tmp_path / "f"
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        path = Path(os.readlink(f"/proc/self/fd/{fd}"))
        events.append("fsync dir" if path == tmp_path else f"fsync {path.name[:len(TMP_PREFIX)]}")
        real_fsync(fd)

    def replace(src, dst):
        events.append("replace")
        real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "fsync", fsync)
    monkeypatch.setattr(atomic.os, "replace", replace)
    write_atomic(target, b"x")
    assert events == [f"fsync {TMP_PREFIX}", "replace", "fsync dir"]


@pytest.mark.parametrize("stage", ["write", "replace"])
def test_an_exception_keeps_the_old_file_and_removes_the_temp(tmp_path, monkeypatch, stage):
    target = tmp_path / "f"
    write_atomic(target, OLD)
    real_write = os.write

    def failing_write(fd, data):
        real_write(fd, bytes(data)[: len(data) // 2])
        raise OSError("disk full")

    def failing_replace(src, dst):
        raise OSError("rename refused")

    if stage == "write":
        monkeypatch.setattr(atomic.os, "write", failing_write)
    else:
        monkeypatch.setattr(atomic.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full|rename refused"):
        write_atomic(target, NEW)
    monkeypatch.undo()
    assert target.read_bytes() == OLD
    assert [p.name for p in tmp_path.iterdir()] == ["f"]


# A writer process that dies (os._exit, no cleanup at all) half way through its bytes, or with the
# temporary file complete and fsynced but not yet renamed.
_CRASH = """
import os, sys
from hydralm import atomic
stage, target = sys.argv[1], sys.argv[2]
real_write = os.write
def write(fd, data):
    real_write(fd, bytes(data)[: len(data) // 2])
    os._exit(9)
def replace(src, dst):
    os._exit(9)
if stage == "write":
    atomic.os.write = write
else:
    atomic.os.replace = replace
atomic.write_atomic(target, b"n" * 1_000_000)
"""


@pytest.mark.parametrize("stage", ["write", "replace"])
def test_a_writer_killed_before_the_rename_leaves_the_old_content(tmp_path, stage):
    target = tmp_path / "f"
    write_atomic(target, OLD)
    proc = subprocess.run([sys.executable, "-c", _CRASH, stage, str(target)], timeout=60)
    assert proc.returncode == 9, "the injected crash did not happen"
    assert target.read_bytes() == OLD
    leftovers = [p for p in tmp_path.iterdir() if p.name != "f"]
    assert len(leftovers) == 1 and leftovers[0].name.startswith(f"{TMP_PREFIX}f-")
    write_atomic(target, NEW)          # the next writer is not blocked by the leftover
    assert target.read_bytes() == NEW


def test_a_reader_never_sees_a_partial_file(tmp_path):
    """One thread rewrites a 1 MB file 40 times (os.write releases the GIL); another reads it the
    whole time. Every read must be exactly one of the two versions."""
    target = tmp_path / "f"
    write_atomic(target, OLD)
    done = threading.Event()
    seen: set[bytes] = set()
    bad: list[int] = []

    def read() -> None:
        while not done.is_set():
            data = target.read_bytes()
            if data in (OLD, NEW):
                seen.add(data[:1])
            else:
                bad.append(len(data))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(40):
            write_atomic(target, NEW if i % 2 == 0 else OLD)
    finally:
        done.set()
        reader.join(30)
    assert not bad, f"partial reads of lengths {bad[:5]}"
    assert seen == {b"o", b"n"}, "the reader saw both versions"
