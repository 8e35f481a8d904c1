"""Shared test settings: loopback-only Ray, offline hub, and where the real LaMP samples live."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
LAMP_DIR = SHARED / "lamp"


@pytest.fixture(scope="session")
def lamp_dir() -> Path:
    """The real LaMP sample records; tests using them skip where ../shared/lamp is absent."""
    if not LAMP_DIR.is_dir():
        pytest.skip(f"real LaMP samples not found at {LAMP_DIR} (../shared/lamp is absent)")
    return LAMP_DIR
