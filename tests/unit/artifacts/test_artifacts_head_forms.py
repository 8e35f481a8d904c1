"""Head files of every form and storage dtype: round trips, bytes per user, old files, tampering."""

from __future__ import annotations

import pytest
import torch

from hydralm.artifacts import Registry
from hydralm.artifacts.serialize import (
    decode_head,
    dequantize,
    encode_head,
    encode_tensors,
    quantize,
)
from hydralm.errors import ArtifactError
from hydralm.model import HeadBank, HeadConfig, HeadState, LowRankHeadState

D = 384          # MiniLM's width: the sizes below are the deployed ones
META = {"kind": "reranker", "user_id": "user-000123", "base_version": "0123456789abcdef"}

# (form, rank, dtype) -> the most bytes one user's head file may take at d=384, and the largest
# error a value may come back with (float32 exact; bfloat16 rounds to 8 significant bits; int8 half a step)
CASES = [
    ("dense", 8, "float32", 600_000, 0.0),
    ("dense", 8, "bfloat16", 300_000, 2 ** -8),
    ("dense", 8, "int8", 152_000, None),
    ("lowrank", 3, "float32", 16_384, 0.0),
    ("lowrank", 8, "bfloat16", 16_384, 2 ** -8),
    ("lowrank", 16, "int8", 16_384, None),
    ("lowrank", 8, "int8", 9_000, None),
]


def _head(form: str, rank: int, dtype: str, seed: int = 0):
    head = HeadConfig(form=form, rank=rank, dtype=dtype)
    return HeadBank(1, D, head=head, generator=torch.Generator().manual_seed(seed)).extract(0)


@pytest.mark.parametrize("form, rank, dtype, max_bytes, rel_error", CASES,
                         ids=[f"{c[0]}-r{c[1]}-{c[2]}" for c in CASES])
def test_each_form_round_trips_within_its_dtypes_precision_and_size(form, rank, dtype, max_bytes,
                                                                    rel_error):
    state = _head(form, rank, dtype)
    data = encode_head(state, **META)
    assert len(data) <= max_bytes
    loaded = decode_head(data, "test head")
    back = loaded.state
    assert (loaded.kind, loaded.user_id, loaded.base_version) == tuple(META.values())
    assert type(back) is type(state) and back.config == state.config
    for name in state.names:
        got, want = getattr(back, name), getattr(state, name)
        assert got.dtype == torch.float32 and got.shape == want.shape
        if rel_error is None:            # int8 matrices: half a quantization step per channel
            bound = want.abs().max() / 127 / 2 + 1e-7 if want.dim() == 2 else want.abs().max() / 256
        else:
            bound = want.abs().max() * rel_error
        assert (got - want).abs().max() <= bound, name


def test_compact_forms_meet_the_per_user_target_and_dense_float32_is_the_papers_size():
    dense = len(encode_head(_head("dense", 8, "float32"), **META))
    assert 148_610 * 4 < dense < 148_610 * 4 + 1_000          # the paper's 594 KB
    for form, rank, dtype, *_ in CASES:
        if form == "lowrank":
            assert len(encode_head(_head(form, rank, dtype), **META)) <= 16 * 1024


def test_int8_scales_are_per_channel_along_the_shorter_side():
    stored = quantize({"a": torch.randn(D, 8), "b": torch.randn(8, D), "w1": torch.randn(5, 5),
                       "b1": torch.randn(D)}, "int8")
    assert {n: (t.dtype, tuple(t.shape)) for n, t in stored.items()} == {
        "a": (torch.int8, (D, 8)), "a.scale": (torch.float32, (8,)),
        "b": (torch.int8, (8, D)), "b.scale": (torch.float32, (8,)),
        "w1": (torch.int8, (5, 5)), "w1.scale": (torch.float32, (5,)),
        "b1": (torch.bfloat16, (D,))}
    zero = dequantize(quantize({"w": torch.zeros(3, 4)}, "int8"), "zeros")["w"]
    assert torch.equal(zero, torch.zeros(3, 4))                # an all-zero channel stays zero


def test_a_version_1_head_file_still_loads_as_a_dense_float32_head():
    state = _head("dense", 8, "float32")
    from hydralm.artifacts.serialize import _tensors_digest
    tensors = state.tensors()
    v1 = encode_tensors(tensors, {"format": "hydralm-head/1", **META, "dim": str(D),
                                  "tensors_sha256": _tensors_digest(tensors)})
    back = decode_head(v1, "old head").state
    assert isinstance(back, HeadState) and back.dtype == "float32"
    assert torch.equal(back.w1, state.w1)


def _rewrite(data: bytes, change) -> bytes:
    """The head file with its stored tensors and metadata passed through `change`."""
    from hydralm.artifacts.serialize import _tensors_digest, decode_tensors
    stored, meta = decode_tensors(data, "x")
    stored, meta = change(dict(stored), dict(meta))
    meta["tensors_sha256"] = _tensors_digest(stored)
    return encode_tensors(stored, meta)


@pytest.mark.parametrize("change, message", [
    (lambda t, m: (t, {**m, "head_rank": "9"}), "metadata says '9'"),
    (lambda t, m: (t, {**m, "head_form": "dense"}), "a dense head needs exactly"),
    (lambda t, m: (t, {**m, "head_form": "sparse"}), "head form must be one of"),
    (lambda t, m: (t, {**m, "head_dtype": "float8"}), "unknown storage dtype 'float8'"),
    (lambda t, m: ({k: v for k, v in t.items() if k != "a.scale"}, m), "lacks a matching"),
])
def test_a_head_file_that_contradicts_itself_is_refused(change, message):
    data = encode_head(_head("lowrank", 8, "int8"), **META)
    with pytest.raises(ArtifactError, match=message):
        decode_head(_rewrite(data, change), "bad head")


def test_the_registry_stores_and_verifies_heads_of_every_form(tmp_path):
    registry = Registry(str(tmp_path))
    version = registry.publish_base({"w": torch.zeros(1)}, {"format": "test"})
    heads = {f"u{i}": _head(form, rank, dtype, seed=i)
             for i, (form, rank, dtype, _, _) in enumerate(CASES)}
    registry.save_heads("adapter", heads, version)
    for user, state in heads.items():
        back = registry.load_head("adapter", user)
        assert back.config == state.config
        assert isinstance(back, LowRankHeadState) == (state.form == "lowrank")
    assert registry.verify() == []
