"""Choosing and configuring the history store without a server: where the PostgreSQL connection
comes from (environment or a mounted Secret file, never the serving config), what a message may
show of it, and how an unreachable database reaches the API (503 with Retry-After)."""

from __future__ import annotations

import pytest

from hydralm.errors import ConfigError, HistoryUnavailableError
from hydralm.history import SqliteHistoryStore
from hydralm.history_pg import PostgresHistoryStore, history_dsn
from serving.config import ServeArgs
from serving.errors import map_exception

DSN = "host=db.internal port=5433 dbname=hydralm user=hydralm password=s3cret-pw"


@pytest.fixture(autouse=True)
def _no_dsn_env(monkeypatch):
    for name in ("HYDRALM_HISTORY_DSN", "HYDRALM_HISTORY_DSN_FILE"):
        monkeypatch.delenv(name, raising=False)


def test_dsn_from_the_environment_first_then_the_secret_file(monkeypatch, tmp_path):
    assert history_dsn() == ""                   # libpq's PG* variables then
    secret = tmp_path / "dsn"
    secret.write_text(DSN + "\n", encoding="utf-8")
    monkeypatch.setenv("HYDRALM_HISTORY_DSN_FILE", str(secret))
    assert history_dsn() == DSN
    monkeypatch.setenv("HYDRALM_HISTORY_DSN", "host=other")
    assert history_dsn() == "host=other"


@pytest.mark.parametrize("content, match", [(None, "cannot be read"), ("  \n", "is empty")])
def test_a_bad_secret_file_is_a_config_error_naming_it(monkeypatch, tmp_path, content, match):
    secret = tmp_path / "dsn"
    if content is not None:
        secret.write_text(content, encoding="utf-8")
    monkeypatch.setenv("HYDRALM_HISTORY_DSN_FILE", str(secret))
    with pytest.raises(ConfigError, match=match) as info:
        history_dsn()
    assert str(secret) in str(info.value)


def test_an_invalid_dsn_is_a_config_error_without_the_password():
    with pytest.raises(ConfigError, match="not a valid libpq connection string") as info:
        PostgresHistoryStore("host=db password=s3cret-pw bogus")
    assert "s3cret-pw" not in str(info.value)


def test_an_unreachable_database_is_unavailable_and_names_no_password(free_tcp_port):
    dsn = f"host=127.0.0.1 port={free_tcp_port} dbname=x user=u password=s3cret-pw"
    with pytest.raises(HistoryUnavailableError, match=f"127.0.0.1:{free_tcp_port}/x") as info:
        PostgresHistoryStore(dsn, pool_min=0, pool_max=1, timeout_s=0.5)
    assert "s3cret-pw" not in str(info.value)
    mapped = map_exception(info.value)
    assert (mapped.status, mapped.code, mapped.retry_after_s) == (503, "history_unavailable", 1.0)
    assert "s3cret-pw" not in mapped.message


@pytest.fixture
def free_tcp_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_serving_config_chooses_the_backend(tmp_path):
    args = ServeArgs(history_path=str(tmp_path / "h.db"))
    assert args.history_backend == "sqlite"
    assert isinstance(args.open_history(), SqliteHistoryStore)
    with pytest.raises(ValueError, match="history_path .* leave history_path null"):
        ServeArgs(history_backend="postgres", history_path=str(tmp_path / "h.db"))
    with pytest.raises(ValueError, match="history_backend"):
        ServeArgs(history_backend="mysql")
    assert ServeArgs(history_backend="postgres").history_where() == "postgres"
