"""A real PostgreSQL server for tests and benchmarks: Debian's `postgresql` package, on loopback.

initdb into a fresh directory, then `pg_ctl start` on a free 127.0.0.1 port with the unix socket
in that directory; as root (CI) both run as the `postgres` system user (PostgreSQL refuses root),
on a directory that user owns. `stop()` is a fast shutdown, `kill()` an immediate one (SIGQUIT:
no checkpoint, recovery from the WAL at the next start); `start()` again reuses the data.

    from postgres_server import LocalPostgres, find_initdb   # tests/ is on sys.path under pytest

    with LocalPostgres() as pg:
        dsn = pg.create_database()
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

__all__ = ["LocalPostgres", "find_initdb"]

USER = "hydra"


def find_initdb() -> str | None:
    """initdb on PATH, else the newest /usr/lib/postgresql/<version>/bin/initdb."""
    found = shutil.which("initdb")
    if found:
        return found
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    return candidates[-1] if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalPostgres:
    """One PostgreSQL server on 127.0.0.1:<port>; data and socket in a temporary directory."""

    def __init__(self, *, settings: dict[str, str] | None = None) -> None:
        initdb = find_initdb()
        if initdb is None:
            raise FileNotFoundError("initdb not found (apt-get install postgresql)")
        self.bin = Path(initdb).parent
        self.as_root = os.geteuid() == 0
        self.dir = Path(tempfile.mkdtemp(prefix="hydralm-pg-"))
        self.data = self.dir / "data"
        self.port = _free_port()
        self.settings = {"listen_addresses": "127.0.0.1", "port": str(self.port),
                         "unix_socket_directories": str(self.dir), "max_connections": "200",
                         **(settings or {})}
        if self.as_root:
            shutil.chown(self.dir, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", USER, "-E", "UTF8",
                  "--locale=C.UTF-8", "--no-sync")
        self.start()

    def _run(self, tool: str, *args: str, timeout: float = 120.0) -> None:
        cmd = [str(self.bin / tool), *args]
        if self.as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"{tool} failed ({done.returncode}): {done.stderr[-2000:]}")

    def dsn(self, dbname: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user={USER} dbname={dbname}"

    def start(self) -> None:
        options = " ".join(f"-c {k}={v}" for k, v in self.settings.items())
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.dir / "log"),
                  "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        """`fast`: a clean shutdown; `immediate`: like a crash (recovery at the next start)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def create_database(self) -> str:
        """A new empty database; its DSN (tests take one each, so they stay independent)."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.dsn(name)

    def close(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self.stop("immediate")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> LocalPostgres:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
