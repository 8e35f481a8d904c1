"""Local paths and s3:// URIs behind one pyarrow filesystem, so every reader and writer in hydralm
handles both the same way.

For s3:// the endpoint comes from the HYDRALM_S3_ENDPOINT knob (e.g. `http://127.0.0.1:8333` for a
SeaweedFS on loopback); empty means AWS itself. Credentials follow pyarrow's (the AWS SDK's) usual
chain: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, ~/.aws, instance metadata.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote, urlsplit

import pyarrow as pa
import pyarrow.fs as pafs

from hydralm.errors import NotFoundError
from hydralm.settings import env_str

__all__ = [
    "filesystem_for",
    "is_remote",
    "join_uri",
    "open_input_stream",
    "open_output_stream",
    "s3_endpoint",
]


def is_remote(uri: str | Path) -> bool:
    """True for s3:// URIs; everything else is a local path."""
    return str(uri).startswith("s3://")


def s3_endpoint() -> tuple[str, str] | None:
    """(endpoint_override, scheme) from HYDRALM_S3_ENDPOINT, or None to use AWS.

    `http://host:port` gives scheme http; a bare `host:port` means https, as the AWS SDK assumes.
    """
    raw = env_str("HYDRALM_S3_ENDPOINT").strip()
    if not raw:
        return None
    parts = urlsplit(raw if "://" in raw else f"https://{raw}")
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(
            f"HYDRALM_S3_ENDPOINT must look like http://host:port or host:port, got {raw!r}")
    return parts.netloc, parts.scheme


def filesystem_for(uri: str | Path) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem for `uri` and the path to use on it.

    Local paths are made absolute; `s3://bucket/key` becomes `bucket/key` on an S3FileSystem built
    by `FileSystem.from_uri` with the configured endpoint (no region lookup when one is set).
    """
    text = str(uri)
    if not is_remote(text):
        local = text[len("file://"):] if text.startswith("file://") else text
        return pafs.LocalFileSystem(), str(Path(local).expanduser().absolute())
    endpoint = s3_endpoint()
    query = ""
    if endpoint is not None:
        host, scheme = endpoint
        query = f"?endpoint_override={quote(host, safe='')}&scheme={scheme}"
    fs, path = pafs.FileSystem.from_uri(text.rstrip("/") + query)
    return fs, path


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
