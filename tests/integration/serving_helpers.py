"""Helpers of the serving integration tests: a tiny real registry, Serve replica lookup and kill,
free ports and polling with a deadline."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path

TRAINED_USERS = ("alice", "bob")


def build_tiny_registry(path: Path) -> Path:
    """A real registry: untrained MiniLM as both bases (one bundle), a random head per kind for
    each of TRAINED_USERS, and random global heads, every head different."""
    from hydralm.artifacts import Registry
    from hydralm.scoring import publish_random_registry

    publish_random_registry(Registry(str(path)), TRAINED_USERS)
    return path


def replica_names(app: str, deployment: str) -> list[str]:
    """Named actors of the deployment's live replicas (SERVE_REPLICA::app#deployment#id)."""
    import ray

    prefix = f"SERVE_REPLICA::{app}#{deployment}#"
    return sorted(a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                  if a["name"].startswith(prefix))


def kill_replica(name: str) -> None:
    """Kill one replica actor as a crash would; Serve's controller starts a replacement."""
    import ray

    ray.kill(ray.get_actor(name, namespace="serve"), no_restart=True)


def free_port() -> int:
    """A port on 127.0.0.1 nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def answers_ok(url: str) -> bool:
    """True when a GET of `url` answers 200 within 5 s."""
    import httpx

    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def wait_until(condition: Callable[[], bool], *, timeout_s: float, what: str,
               interval_s: float = 0.5) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")
