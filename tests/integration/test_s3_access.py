"""The one S3 access layer against a real S3 server (SeaweedFS on loopback): each client kind
(boto3 for artifacts and the response cache, pyarrow for data and training files) makes a round
trip through the same HYDRALM_S3_ENDPOINT, and sees what the others wrote. Without a scheme the
endpoint means https for every client alike: against this plain-HTTP server they all fail the
same way, quickly, instead of one working and one refusing the setting."""

from __future__ import annotations

import time

import pytest
from botocore.exceptions import BotoCoreError
from fixtures_s3 import s3_server  # noqa: F401  (the session's SeaweedFS server)

from hydralm.artifacts import Storage
from hydralm.data.fs import open_input_stream, open_output_stream
from hydralm.errors import ArtifactError
from hydralm.generator import ResponseCache
from training.files import read_json, write_json

pytestmark = pytest.mark.integration

PAYLOAD = {"model": "m", "endpoint": "completions", "prompt": "p", "n": 2}


@pytest.fixture()
def bucket(s3_server, monkeypatch) -> str:  # noqa: F811
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    return s3_server.make_bucket()


@pytest.mark.parametrize("form", ["{endpoint}", "{endpoint}/"])
def test_every_client_round_trips_through_one_endpoint(s3_server, bucket, monkeypatch,  # noqa: F811
                                                       form):
    monkeypatch.setenv("HYDRALM_S3_ENDPOINT", form.format(endpoint=s3_server.endpoint))
    root = f"s3://{bucket}/shared"
    storage = Storage.from_uri(root)                       # boto3: artifact storage
    storage.put("from-boto3.bin", b"written by boto3")
    assert storage.get("from-boto3.bin") == b"written by boto3"
    ResponseCache(f"{root}/cache").put(PAYLOAD, ["a", "b"])   # boto3: the response cache
    assert ResponseCache(f"{root}/cache").get(PAYLOAD) == ["a", "b"]
    with open_output_stream(f"{root}/from-arrow.bin") as out:   # pyarrow: data files
        out.write(b"written by pyarrow")
    write_json(f"{root}/doc.json", {"k": 1})               # pyarrow: training files
    assert read_json(f"{root}/doc.json") == {"k": 1}
    # One endpoint: each library reads what the other wrote.
    with open_input_stream(f"{root}/from-boto3.bin") as stream:
        assert stream.read() == b"written by boto3"
    assert storage.get("from-arrow.bin") == b"written by pyarrow"


def test_an_endpoint_without_a_scheme_is_https_for_every_client(s3_server, bucket,  # noqa: F811
                                                                monkeypatch):
    monkeypatch.setenv("HYDRALM_S3_ENDPOINT", s3_server.endpoint.removeprefix("http://"))
    monkeypatch.setenv("HYDRALM_S3_MAX_ATTEMPTS", "1")
    root = f"s3://{bucket}/p"
    calls = {
        "artifact storage": (lambda: Storage.from_uri(root).get("k"), ArtifactError),
        "response cache": (lambda: ResponseCache(root).get(PAYLOAD), BotoCoreError),
        "pyarrow": (lambda: open_input_stream(f"{root}/k"), OSError),
    }
    for name, (call, error) in calls.items():
        start = time.monotonic()
        with pytest.raises(error, match=r"(?i)ssl|tls|https") as info:
            call()
        assert time.monotonic() - start < 10, f"{name} took too long to fail: {info.value}"
