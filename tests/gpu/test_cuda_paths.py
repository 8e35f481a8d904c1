"""The scorer and head fitting on CUDA: bf16 chosen where the GPU has it, scores as on the CPU
within the bf16 bound, and fitted heads as on the CPU."""

from __future__ import annotations

import asyncio

import pytest
import torch

from hydralm.artifacts import Registry
from hydralm.model import HeadBank, fit_heads_on_embeddings
from hydralm.model.precision import resolve_precision
from hydralm.scoring import BatchScorer, ScoreRow, publish_random_registry

USERS = ["ann", "bob", "cyd"]


def test_auto_precision_is_bf16_on_a_bf16_gpu():
    expected = "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    assert resolve_precision("auto", "cuda") == expected


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> Registry:
    reg = Registry(str(tmp_path_factory.mktemp("gpu-registry")))
    publish_random_registry(reg, USERS, seed=3)
    return reg


def test_scorer_on_cuda_scores_as_the_cpu_does(registry):
    rows = [ScoreRow(kind, user, f"a question of {user} about film {i}",
                     f"a film about a river and a storm, number {i}")
            for kind in ("reranker", "adapter") for user in USERS for i in range(4)]
    cpu = asyncio.run(BatchScorer(registry, precision="fp32").score_rows(rows))
    gpu_scorer = BatchScorer(registry, device="cuda", max_forward_pairs=512)
    gpu = asyncio.run(gpu_scorer.score_rows(rows))
    assert gpu_scorer.encoder("reranker").device.type == "cuda"
    largest = max(abs(a.score - b.score) for a, b in zip(cpu, gpu, strict=True))
    assert largest < 0.02, f"largest |cuda - cpu| score difference {largest:.4f}"


def test_fitting_on_cuda_gives_the_cpu_heads():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3 * 20, 384, generator=gen)
    head_idx = torch.arange(3).repeat_interleave(20)
    labels = torch.randint(0, 2, (60,), generator=gen)
    init = HeadBank(1, 384, generator=torch.Generator().manual_seed(1)).extract(0)
    settings = dict(epochs=3, lr=1e-2, batch_size=20, dropout=0.0, seed=2, init=init)
    cpu = fit_heads_on_embeddings(x, head_idx, labels, 3, **settings)
    gpu = fit_heads_on_embeddings(x.cuda(), head_idx, labels, 3, **settings)
    assert gpu.w1.device.type == "cuda"
    for name in cpu.names:
        torch.testing.assert_close(getattr(gpu, name).cpu(), getattr(cpu, name),
                                   rtol=1e-3, atol=1e-4)
