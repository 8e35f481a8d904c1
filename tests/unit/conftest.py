"""Unit tests run without Ray: any ray.init is an error here (integration tests live apart)."""

from __future__ import annotations

import sys

import pytest


@pytest.fixture(autouse=True)
def _forbid_ray_init(monkeypatch):
    def refuse(*args, **kwargs):
        raise RuntimeError("unit tests must not start Ray; move this test to tests/integration")

    if "ray" in sys.modules:
        monkeypatch.setattr(sys.modules["ray"], "init", refuse)
    yield
