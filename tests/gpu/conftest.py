"""GPU tests: every test here is marked `gpu` and skipped where torch sees no CUDA device (the
CI machine), so `make test` passes there and a GPU node runs them with `pytest tests/gpu`."""

from __future__ import annotations

import pytest
import torch


def pytest_collection_modifyitems(config, items):
    skip = pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
    for item in items:
        if "tests/gpu/" in str(item.path).replace("\\", "/"):
            item.add_marker(pytest.mark.gpu)
            if not torch.cuda.is_available():
                item.add_marker(skip)
