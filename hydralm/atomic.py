"""The one way hydralm writes a whole local file: a reader sees the old bytes or the new bytes,
never a part, and a written file survives a power loss once `write_atomic` returns.

The bytes go to a hidden temporary sibling (`.tmp-<name>-<random>`, in the target's directory so
the rename never crosses a filesystem), which is fsynced, `os.replace`d over the target (atomic
on POSIX), and then the directory is fsynced so the rename itself is durable. A crash at any point
leaves the old file (plus at worst the temporary one, whose name starts with a dot: never listed,
never a valid artifact key); any exception removes the temporary file and propagates.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

__all__ = ["TMP_PREFIX", "fsync_dir", "write_atomic"]

TMP_PREFIX = ".tmp-"


def write_atomic(path: str | os.PathLike[str], data: bytes | bytearray | memoryview, *,
                 mode: int = 0o644) -> Path:
    """Write `data` to `path` atomically and durably (parent directories created); returns the
    path. `mode` is the new file's permission bits before the umask (0o644: readable by the Ray
    workers of another user)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f"{TMP_PREFIX}{target.name}-{uuid.uuid4().hex}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        try:
            view = memoryview(data).cast("B")
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(target.parent)
    return target


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    """Make the entries of `directory` (a rename into it) durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
