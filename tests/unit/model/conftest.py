"""Model tests run torch on one thread: the CI machine has two shared cores, and intra-op threads
on these tiny tensors only add contention (measured: ~1 ms vs ~100 ms per fitting step under load).
"""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
