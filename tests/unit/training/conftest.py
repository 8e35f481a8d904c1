"""A tiny random BERT encoder for tests that train (see tests/training_fixtures.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from training_fixtures import build_tiny_encoder


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory) -> Path:
    return build_tiny_encoder(tmp_path_factory.mktemp("tiny-encoder"))
