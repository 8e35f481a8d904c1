"""The `postgres` fixture: one real PostgreSQL server on loopback for the whole test session.

Registered in tests/integration/conftest.py (`from fixtures_postgres import postgres`), so every
module shares the one server; tests take their own database (`postgres.create_database()`) and
stay independent. Skips, with the reason, where Debian's `postgresql` package is not installed
(`.ci/run` installs it).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from postgres_server import LocalPostgres, find_initdb

__all__ = ["postgres"]


@pytest.fixture(scope="session")
def postgres() -> Iterator[LocalPostgres]:
    if find_initdb() is None:
        pytest.skip("PostgreSQL's initdb is not installed (apt-get install postgresql; "
                    ".ci/run does it)")
    with LocalPostgres() as server:
        yield server
