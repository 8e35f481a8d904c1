"""Local paths and s3:// URIs behind one pyarrow filesystem, so every reader and writer in hydralm
handles both the same way.

For s3:// the filesystem comes from `hydralm.s3` (the one S3 access layer, shared with the boto3
clients): the endpoint from the HYDRALM_S3_ENDPOINT knob (e.g. `http://127.0.0.1:8333` for a
SeaweedFS on loopback; a bare `host:port` means https; empty means AWS itself), the timeouts and
attempts of HYDRALM_S3_TIMEOUT_S and HYDRALM_S3_MAX_ATTEMPTS. Credentials follow pyarrow's (the
AWS SDK's) usual chain: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, ~/.aws, instance metadata.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs

from hydralm.errors import NotFoundError
from hydralm.s3 import arrow_filesystem, split_s3_uri

__all__ = [
    "filesystem_for",
    "is_remote",
    "join_uri",
    "open_input_stream",
    "open_output_stream",
]


def is_remote(uri: str | Path) -> bool:
    """True for s3:// URIs; everything else is a local path."""
    return str(uri).startswith("s3://")


def filesystem_for(uri: str | Path, *, credentials: tuple[str, str] | None = None,
                   ) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem for `uri` and the path to use on it.

    Local paths are made absolute; `s3://bucket/key` becomes `bucket/key` on the S3FileSystem of
    `hydralm.s3.arrow_filesystem` (the configured endpoint, timeouts and attempts; `credentials`
    put into it, see there).
    """
    text = str(uri)
    if not is_remote(text):
        local = text[len("file://"):] if text.startswith("file://") else text
        return pafs.LocalFileSystem(), str(Path(local).expanduser().absolute())
    bucket, key = split_s3_uri(text)
    return arrow_filesystem(bucket, credentials=credentials), f"{bucket}/{key}" if key else bucket


def join_uri(base: str | Path, *parts: str) -> str:
    """`base/part/...` for a local path or an s3:// URI (no os.sep surprises)."""
    text = str(base).rstrip("/")
    return "/".join([text, *(p.strip("/") for p in parts)])


def open_input_stream(uri: str | Path) -> pa.NativeFile:
    """A sequential binary reader for a local file or s3:// object.

    A missing file is a NotFoundError naming the URI (pyarrow's own error text varies by backend).
    """
    fs, path = filesystem_for(uri)
    info = fs.get_file_info(path)
    if info.type != pafs.FileType.File:
        raise NotFoundError(f"no such file: {uri}")
    return fs.open_input_stream(path)


def open_output_stream(uri: str | Path) -> pa.NativeFile:
    """A binary writer for a local file (parent directories created) or s3:// object."""
    fs, path = filesystem_for(uri)
    parent = path.rsplit("/", 1)[0]
    if parent and not is_remote(uri):
        fs.create_dir(parent, recursive=True)
    return fs.open_output_stream(path)
