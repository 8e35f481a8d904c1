"""A crash in the middle of writing a head, an index or the manifest leaves the previous version
readable and loadable. Real crashes: a writer process is SIGKILLed at a random moment of a loop of
updates, and os._exit(9) is injected at a chosen point of one write (half the bytes written, or
after the temporary file is complete but before the rename)."""

from __future__ import annotations

import multiprocessing as mp
import os
import random
import signal
import time
from pathlib import Path

import pytest
import torch

from hydralm.artifacts import Registry, Storage
from hydralm.errors import ArtifactError
from hydralm.model import HeadState

USERS = ["u1", "../escape", "u3"]
KIND = "reranker"


def _context():
    """Fresh processes without paying torch's import each time: a fork server that preloaded
    the modules (and never ran torch ops, so forking it is safe)."""
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["torch", "hydralm.artifacts"])
    return ctx


def head(version: float) -> HeadState:
    d = 4
    return HeadState(torch.full((d, d), version), torch.full((d,), version),
                     torch.full((d, 2), version), torch.full((2,), version))


def version_of(state: HeadState) -> float:
    return float(state.w1[0, 0])


def _publish_v1(root: Path) -> Registry:
    registry = Registry(str(root))
    base = registry.publish_base({"w": torch.arange(4.0)}, {"name": "tiny"})
    registry.save_heads(KIND, {u: head(1.0) for u in USERS}, base)
    registry.save_global_head(KIND, head(1.0), base)
    return registry


def _write_forever(root: str, version: float) -> None:
    """Publish versions `version`, +1, ... of every user's head (one manifest update each) and
    of the global head, until killed."""
    registry = Registry(root, write_threads=2)
    base = registry.base_version()
    while True:
        registry.save_heads(KIND, {u: head(version) for u in USERS}, base)
        registry.save_global_head(KIND, head(version), base)
        version += 1


def _check_consistent(root: Path) -> float:
    """Every reader-visible file intact, and all users on one version; returns it."""
    registry = Registry(str(root))
    assert registry.verify() == []
    versions = {version_of(registry.load_head(KIND, u)) for u in USERS}
    assert len(versions) == 1, f"one manifest update must publish all users at once: {versions}"
    assert not [k for k in registry.storage.list() if "/." in f"/{k}"], "a temp file is listed"
    version_of(registry.load_global_head(KIND))
    return versions.pop()


def test_sigkill_at_random_moments_of_a_write_loop(tmp_path):
    _publish_v1(tmp_path)
    rng, seen = random.Random(8), 1.0
    for _ in range(3):
        proc = _context().Process(target=_write_forever, args=(str(tmp_path), seen + 1))
        start_version = Registry(str(tmp_path)).manifest_version()
        proc.start()
        deadline = time.monotonic() + 60
        while Registry(str(tmp_path)).manifest_version() < start_version + 2:
            assert time.monotonic() < deadline and proc.is_alive(), "the writer made no progress"
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 0.3))
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(30)
        assert proc.exitcode == -signal.SIGKILL
        now = _check_consistent(tmp_path)
        assert now > seen, "the writer published at least two versions before the kill"
        seen = now
    registry = Registry(str(tmp_path))     # and the next writer carries on from there
    registry.save_heads(KIND, {u: head(99.0) for u in USERS}, registry.base_version())
    assert _check_consistent(tmp_path) == 99.0


def _crash_during(root: str, target: str, stage: str) -> None:
    """Write version 2 and die (os._exit(9)) in the write whose path contains `target`: half
    its bytes written (`write`), or its temp file complete but not yet renamed (`rename`)."""
    real_write, real_replace = os.write, os.replace

    def write(fd, data):
        if stage == "write" and target in os.readlink(f"/proc/self/fd/{fd}"):
            real_write(fd, bytes(data)[: max(1, len(data) // 2)])
            os._exit(9)
        return real_write(fd, data)

    def replace(src, dst, *args, **kwargs):
        if stage == "rename" and target in os.fspath(dst):
            os._exit(9)
        return real_replace(src, dst, *args, **kwargs)

    os.write, os.replace = write, replace
    registry = Registry(root, write_threads=1)
    registry.save_heads(KIND, {u: head(2.0) for u in USERS}, registry.base_version())
    registry.save_global_head(KIND, head(2.0), registry.base_version())
    os._exit(0)


@pytest.mark.parametrize("target", ["heads/", "index/", "manifest.json", "global/"])
@pytest.mark.parametrize("stage", ["write", "rename"])
def test_a_crash_inside_one_write_keeps_the_previous_version(tmp_path, target, stage):
    _publish_v1(tmp_path)
    before = Registry(str(tmp_path)).manifest_version()
    proc = _context().Process(target=_crash_during,
                                           args=(str(tmp_path), target, stage))
    proc.start()
    proc.join(60)
    assert proc.exitcode == 9, "the injected crash did not happen"
    after = Registry(str(tmp_path)).manifest_version()
    if target == "global/":       # the users' update committed before the global head's write
        assert after == before + 1 and _check_consistent(tmp_path) == 2.0
        assert version_of(Registry(str(tmp_path)).load_global_head(KIND)) == 1.0
    else:
        assert after == before and _check_consistent(tmp_path) == 1.0
    leftovers = [p for p in tmp_path.rglob(".tmp-*")]
    assert leftovers, "the crash should leave its temp file behind"
    registry = Registry(str(tmp_path))   # the next writer is not blocked by the leftovers
    registry.save_heads(KIND, {u: head(3.0) for u in USERS}, registry.base_version())
    assert _check_consistent(tmp_path) == 3.0


class FailingPuts(Storage):
    """Storage whose writes of keys containing `target` fail like an S3 PUT that errored."""

    def __init__(self, inner: Storage, target: str) -> None:
        self.inner, self.target = inner, target

    @property
    def uri(self) -> str:
        return self.inner.uri

    def _fail(self, key: str) -> None:
        if self.target in key:
            raise ArtifactError(f"S3 put of {key!r} failed: connection reset")

    def put(self, key: str, data: bytes) -> None:
        self._fail(key)
        self.inner.put(key, data)

    def put_if(self, key: str, data: bytes, token: str | None) -> None:
        self._fail(key)
        self.inner.put_if(key, data, token)

    def get(self, key: str) -> bytes:
        return self.inner.get(key)

    def get_versioned(self, key: str) -> tuple[bytes, str]:
        return self.inner.get_versioned(key)

    def exists(self, key: str) -> bool:
        return self.inner.exists(key)

    def list(self, prefix: str = "") -> list[str]:
        return self.inner.list(prefix)

    def delete(self, key: str) -> None:
        self.inner.delete(key)


@pytest.mark.parametrize("target", ["heads/", "index/", "manifest.json"])
def test_a_failed_storage_write_keeps_the_previous_version(tmp_path, target):
    registry = _publish_v1(tmp_path)
    failing = Registry(FailingPuts(registry.storage, target))
    with pytest.raises(ArtifactError, match="connection reset"):
        failing.save_heads(KIND, {u: head(2.0) for u in USERS}, registry.base_version())
    assert _check_consistent(tmp_path) == 1.0
