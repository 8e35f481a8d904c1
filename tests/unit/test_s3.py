"""One S3 access layer: one endpoint setting read one way, and every client (boto3 for artifacts
and the response cache, pyarrow for data and training files) built from it with the same endpoint,
timeouts and attempts. No S3 server here (tests/integration/test_s3_access.py has the real one):
the clients are inspected, and a loopback socket that never answers shows the timeouts."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator

import pyarrow.fs as pafs
import pytest
from botocore.exceptions import BotoCoreError

from hydralm.artifacts import S3Storage, Storage
from hydralm.data.fs import filesystem_for, open_input_stream
from hydralm.errors import ArtifactError, ConfigError
from hydralm.generator import ResponseCache
from hydralm.s3 import (
    S3Endpoint,
    arrow_filesystem,
    boto3_client,
    parse_endpoint,
    s3_settings,
    split_s3_uri,
)


def _options(fs: pafs.S3FileSystem) -> dict:
    """The options an S3FileSystem was built with (what pickling it carries)."""
    return fs.__reduce__()[1][0]


@pytest.fixture(autouse=True)
def _s3_env(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")   # no region lookup over the network
    for name in ("HYDRALM_S3_ENDPOINT", "HYDRALM_S3_TIMEOUT_S", "HYDRALM_S3_MAX_ATTEMPTS"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("raw, scheme, host", [
    ("http://127.0.0.1:8333", "http", "127.0.0.1:8333"),
    ("http://127.0.0.1:8333/", "http", "127.0.0.1:8333"),
    (" https://s3.example.com ", "https", "s3.example.com"),
    ("127.0.0.1:8333", "https", "127.0.0.1:8333"),       # no scheme: https, as both SDKs assume
    ("localhost:9000", "https", "localhost:9000"),
    ("[::1]:8333", "https", "[::1]:8333"),
])
def test_endpoint_forms(raw, scheme, host):
    endpoint = parse_endpoint(raw)
    assert endpoint == S3Endpoint(scheme=scheme, host=host)
    assert endpoint.url == f"{scheme}://{host}"


@pytest.mark.parametrize("raw", ["ftp://host:21", "http://host:8333/bucket", "http://u:p@host:1",
                                 "http://host:99999", "host:port", "http://", "http://host?x=1"])
def test_bad_endpoints_name_the_knob_and_value(raw):
    with pytest.raises(ConfigError, match=rf"HYDRALM_S3_ENDPOINT .*got {re.escape(repr(raw))}"):
        parse_endpoint(raw)


def test_empty_endpoint_means_aws():
    assert parse_endpoint("") is None and parse_endpoint("  ") is None
    assert s3_settings().endpoint is None and boto3_client().meta.endpoint_url.startswith("https://")


@pytest.mark.parametrize("name, value", [("HYDRALM_S3_TIMEOUT_S", "0"),
                                         ("HYDRALM_S3_TIMEOUT_S", "abc"),
                                         ("HYDRALM_S3_MAX_ATTEMPTS", "0")])
def test_bad_knobs_are_named(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=name):
        s3_settings()


@pytest.mark.parametrize("uri, expected", [("s3://b", ("b", "")), ("s3://b/p/q/", ("b", "p/q"))])
def test_split_s3_uri(uri, expected):
    assert split_s3_uri(uri) == expected


@pytest.mark.parametrize("uri", ["s3://", "s3:///p", "gs://b/p"])
def test_split_s3_uri_rejects(uri):
    with pytest.raises(ConfigError, match=re.escape(repr(uri))):
        split_s3_uri(uri)


@pytest.mark.parametrize("raw, url", [
    ("http://127.0.0.1:8333", "http://127.0.0.1:8333"),
    ("127.0.0.1:8333", "https://127.0.0.1:8333"),       # boto3 alone refused this form before
    ("https://s3.example.com:9000/", "https://s3.example.com:9000"),
])
def test_every_client_gets_the_same_endpoint(monkeypatch, raw, url):
    monkeypatch.setenv("HYDRALM_S3_ENDPOINT", raw)
    scheme, host = url.split("://")
    expected_fs = {"endpoint_override": host, "scheme": scheme, "region": "us-east-1",
                   "connect_timeout": 10.0, "request_timeout": 10.0}
    assert boto3_client().meta.endpoint_url == url
    assert S3Storage("bucket").endpoint_url == url
    assert Storage.from_uri("s3://bucket/p").client.meta.endpoint_url == url
    fs, path = filesystem_for("s3://bucket/p/x.parquet")
    assert path == "bucket/p/x.parquet"
    for candidate in (fs, arrow_filesystem("bucket")):
        assert isinstance(candidate, pafs.S3FileSystem)
        assert _options(candidate).items() >= expected_fs.items()
    ResponseCache("s3://bucket/cache")    # builds its client the same way (no error, no I/O)


def test_endpoint_argument_is_parsed_the_same_way():
    assert S3Storage("b", endpoint_url="127.0.0.1:2").endpoint_url == "https://127.0.0.1:2"
    with pytest.raises(ConfigError, match="endpoint_url"):
        S3Storage("b", endpoint_url="ftp://127.0.0.1:2")


def test_timeouts_and_attempts_reach_boto3(monkeypatch):
    monkeypatch.setenv("HYDRALM_S3_TIMEOUT_S", "2.5")
    monkeypatch.setenv("HYDRALM_S3_MAX_ATTEMPTS", "4")
    config = boto3_client().meta.config
    assert (config.connect_timeout, config.read_timeout) == (2.5, 2.5)
    assert config.retries == {"total_max_attempts": 4, "mode": "standard"}   # the first included
    options = _options(arrow_filesystem("b"))
    assert (options["connect_timeout"], options["request_timeout"]) == (2.5, 2.5)


def test_credentials_go_into_the_filesystem_only_when_asked():
    import pickle

    plain = pickle.loads(pickle.dumps(arrow_filesystem("b")))
    assert _options(plain)["access_key"] is None
    embedded = pickle.loads(pickle.dumps(arrow_filesystem("b", credentials=("ak", "sk"))))
    assert _options(embedded)["access_key"] == "ak"


@pytest.fixture()
def silent_endpoint(monkeypatch) -> Iterator[tuple[str, list[socket.socket]]]:
    """A loopback S3 endpoint that accepts connections and never answers, with a short timeout
    and one attempt: every client must give up in about a second (not botocore's 60 s), after
    one connection. Yields (an s3:// URI, the connections accepted so far)."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except (TimeoutError, OSError):
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    monkeypatch.setenv("HYDRALM_S3_ENDPOINT", f"http://127.0.0.1:{server.getsockname()[1]}")
    monkeypatch.setenv("HYDRALM_S3_TIMEOUT_S", "1")
    monkeypatch.setenv("HYDRALM_S3_MAX_ATTEMPTS", "1")
    yield "s3://bucket/prefix", held
    stop.set()
    thread.join(5)
    for conn in held:
        conn.close()
    server.close()


@pytest.mark.parametrize("client", ["response cache", "artifact storage", "pyarrow"])
def test_a_silent_endpoint_fails_within_the_timeout(silent_endpoint, client):
    uri, connections = silent_endpoint
    calls = {
        "response cache": (lambda: ResponseCache(uri).get({"prompt": "p"}), BotoCoreError),
        "artifact storage": (lambda: Storage.from_uri(uri).get("k"), ArtifactError),
        "pyarrow": (lambda: open_input_stream(f"{uri}/k"), OSError),
    }
    call, error = calls[client]
    start = time.monotonic()
    with pytest.raises(error):
        call()
    assert time.monotonic() - start < 8, f"{client} waited past its 1 s timeout"
    assert len(connections) == 1, f"{client}: one attempt means one request"
