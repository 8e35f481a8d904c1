"""Fixtures for the generator client tests: the fault-injection server and fast-retry configs."""

from __future__ import annotations

import random

import pytest
from fault_server import FaultServer

from hydralm.generator import GeneratorClient, GeneratorConfig


@pytest.fixture
def server():
    with FaultServer() as srv:
        yield srv


@pytest.fixture
def make_client(server, monkeypatch):
    """GeneratorClient against `server` with short timeouts and backoff; keyword overrides."""
    for name in ("HYDRALM_GENERATOR_BASE_URL", "HYDRALM_GENERATOR_API_KEY", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)

    def make(**overrides) -> GeneratorClient:
        fields = {"backend": "openai", "base_url": server.base_url, "timeout_s": 2.0,
                  "max_retries": 3, "backoff_base_s": 0.01, "backoff_cap_s": 0.05, **overrides}
        return GeneratorClient(GeneratorConfig(**fields), rng=random.Random(0))

    return make
