"""Residual heads: the kind's shared first layer + a per-user low-rank delta. A bank computes the
formula in both modes, a fresh head is exactly the shared (global) head, a head is applied only with
the shared layer it names, head files carry that name, and model configs take the form (training,
fitting and serving: tests/unit/training/test_training_residual_heads.py)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from hydralm.artifacts import Registry
from hydralm.artifacts.serialize import decode_head, encode_head
from hydralm.errors import ArtifactError
from hydralm.model import (
    HeadBank,
    HeadConfig,
    HeadState,
    ModelConfig,
    ResidualHeadState,
    shared_digest,
)

D, R = 12, 3
RESIDUAL = HeadConfig(form="residual", rank=R, dtype="float32")   # as _residual() stores
META = {"kind": "adapter", "user_id": "u7", "base_version": "0123456789abcdef"}


def _randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _global(seed: int = 0) -> HeadState:
    return HeadState(_randn(D, D, seed=seed) / D ** 0.5, _randn(D, seed=seed + 1),
                     _randn(D, 2, seed=seed + 2), _randn(2, seed=seed + 3))


def _residual(shared: torch.Tensor, seed: int, rank: int = R, dim: int = D,
              dtype: str = "float32") -> ResidualHeadState:
    return ResidualHeadState(_randn(dim, rank, seed=seed), _randn(rank, dim, seed=seed + 1),
                             _randn(dim, seed=seed + 2), _randn(dim, 2, seed=seed + 3),
                             _randn(2, seed=seed + 4), dtype=dtype, shared=shared_digest(shared))


@pytest.mark.parametrize("mode", ["segment", "bmm"])
def test_forward_is_the_shared_layer_plus_each_rows_own_delta(mode):
    w1 = _global().w1
    states = [_residual(w1, seed=10 * i) for i in range(3)]
    bank = HeadBank.from_states(states, dropout=0.0, mode=mode, shared=w1).eval()
    x, idx = _randn(7, D, seed=5), torch.tensor([2, 0, 2, 1, 0, 0, 2])
    want = torch.stack([torch.tanh(x[r] @ (w1 + s.a @ s.b) + s.b1) @ s.w2 + s.b2
                        for r, s in enumerate(states[int(i)] for i in idx)])
    torch.testing.assert_close(bank(x, idx), want, rtol=1e-5, atol=1e-5)


def test_a_fresh_residual_head_is_exactly_the_global_head():
    g = _global()
    bank = HeadBank(3, D, head=RESIDUAL, dropout=0.0, shared=g.w1,
                    generator=torch.Generator().manual_seed(1))
    assert torch.count_nonzero(bank.b) == 0 and torch.count_nonzero(bank.a) > 0
    with torch.no_grad():                      # the global head's own b1, w2, b2
        bank.b1.copy_(g.b1.expand(3, D)), bank.w2.copy_(g.w2.expand(3, D, 2))
        bank.b2.copy_(g.b2.expand(3, 2))
    dense = HeadBank.from_states([g], dropout=0.0).eval()
    x = _randn(5, D, seed=2)
    torch.testing.assert_close(bank.eval()(x, torch.tensor([0, 1, 2, 1, 0])),
                               dense(x, torch.zeros(5, dtype=torch.long)))


def test_modes_agree_in_gradients_of_the_shared_layer_and_the_factors():
    w1 = _global().w1
    states = [_residual(w1, seed=10 * i) for i in range(4)]
    x, idx = _randn(8, D, seed=3), torch.tensor([0, 2, 2, 2, 1, 0, 3, 2])
    grads = {}
    for mode in ("segment", "bmm"):
        bank = HeadBank.from_states(states, dropout=0.0, mode=mode, shared=w1)
        bank(x, idx).square().sum().backward()
        grads[mode] = [p.grad.clone() for p in bank.parameters()]
    assert len(grads["bmm"]) == 6                     # shared_w1 once, then a, b, b1, w2, b2
    for got, want in zip(grads["bmm"], grads["segment"], strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_extract_names_the_banks_shared_layer_and_round_trips():
    w1 = _global().w1
    bank = HeadBank.from_states([_residual(w1, seed=1), _residual(w1, seed=2)], shared=w1)
    state = bank.extract(1)
    assert isinstance(state, ResidualHeadState) and state.shared == shared_digest(w1)
    assert state.config == RESIDUAL and state.rank == R
    bank.load(0, state)
    assert torch.equal(bank.extract(0).b, state.b)


@pytest.mark.parametrize("call, message", [
    (lambda w1, other: HeadBank(1, D, head=RESIDUAL), "needs its kind's shared first layer"),
    (lambda w1, other: HeadBank(1, D, shared=w1), "only residual heads take a shared"),
    (lambda w1, other: HeadBank(1, D, head=RESIDUAL, shared=w1[:4]), r"must be \[12, 12\]"),
    (lambda w1, other: HeadBank.from_states([_residual(w1, seed=1)]), "needs its kind's shared"),
    (lambda w1, other: HeadBank.from_states([_residual(w1, seed=1)], shared=other),
     "was fitted on the shared first layer"),
    (lambda w1, other: HeadBank.from_states([_residual(other, seed=1)], shared=other).load(
        0, _residual(w1, seed=2)), "was fitted on the shared first layer"),
    (lambda w1, other: dataclasses.replace(_residual(w1, seed=1), shared=""), "by a sha256"),
])
def test_a_residual_head_is_applied_only_with_the_shared_layer_it_names(call, message):
    with pytest.raises(ValueError, match=message):
        call(_global(0).w1, _global(9).w1)


@pytest.mark.parametrize("rank, dtype, max_bytes", [(8, "bfloat16", 16 * 1024),
                                                    (8, "int8", 9 * 1024),
                                                    (16, "int8", 16 * 1024)])
def test_a_head_file_keeps_the_shared_layers_name_within_the_per_user_target(rank, dtype,
                                                                            max_bytes):
    w1 = _randn(384, 384, seed=3)
    state = _residual(w1, seed=4, rank=rank, dim=384, dtype=dtype)
    data = encode_head(state, **META)
    back = decode_head(data, "residual head").state
    assert len(data) <= max_bytes
    assert isinstance(back, ResidualHeadState) and back.shared == state.shared
    assert back.config == state.config
    HeadBank.from_states([back], shared=w1)           # applies with the layer it names


def test_a_head_file_without_its_shared_layers_name_is_refused():
    from hydralm.artifacts.serialize import _tensors_digest, decode_tensors, encode_tensors
    stored, meta = decode_tensors(encode_head(_residual(_global().w1, seed=1), **META), "x")
    del meta["shared_w1_sha256"]
    meta["tensors_sha256"] = _tensors_digest(stored)
    with pytest.raises(ArtifactError, match="malformed head: a residual head names its shared"):
        decode_head(encode_tensors(stored, meta), "bad head")


def test_the_registry_stores_residual_heads_with_their_shared_layers_name(tmp_path):
    registry = Registry(str(tmp_path))
    version = registry.publish_base({"w": torch.zeros(1)}, {"format": "test"})
    state = _residual(_global().w1, seed=6)
    registry.save_heads("adapter", {"u1": state}, version)
    back = registry.load_head("adapter", "u1")
    assert isinstance(back, ResidualHeadState) and back.shared == state.shared
    assert torch.equal(back.a, state.a)


def test_model_configs_take_the_residual_form():
    assert RESIDUAL.describe() == "residual r=3 float32"
    assert RESIDUAL.shape_key == ("residual", R)
    config = ModelConfig.from_dict({"head": {"form": "residual", "rank": 3}}, source="test")
    assert config.head == HeadConfig(form="residual", rank=R, dtype="int8")   # the default dtype
