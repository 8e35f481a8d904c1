"""HeadBank: both ways of applying per-row heads agree, and each row gets its own user's head."""

from __future__ import annotations

import math

import pytest
import torch

from hydralm.model import HeadBank, HeadState, segments, sort_by_head

D = 12


def _bank(num_heads: int = 5, mode: str = "segment", seed: int = 0) -> HeadBank:
    bank = HeadBank(num_heads, D, dropout=0.0, mode=mode,
                    generator=torch.Generator().manual_seed(seed))
    return bank.eval()


@pytest.mark.parametrize("head_idx", [
    [0, 1, 2, 3, 4, 0, 1, 2],          # interleaved users
    [3, 3, 3, 3],                      # one user
    [4, 0, 0, 0, 0, 0, 0, 0, 0, 2],    # skewed group sizes (padding-heavy for bmm)
    [2],                               # one row
])
def test_bmm_and_segment_modes_agree_in_values_and_gradients(head_idx):
    x = torch.randn(len(head_idx), D, generator=torch.Generator().manual_seed(1))
    idx = torch.tensor(head_idx)
    outs, grads = {}, {}
    for mode in ("bmm", "segment"):
        bank = _bank(mode=mode)
        out = bank(x, idx)
        out.square().sum().backward()
        outs[mode], grads[mode] = out.detach(), bank.w1.grad.clone()
        with torch.no_grad():                     # the inference path indexes without unbind
            torch.testing.assert_close(bank(x, idx), outs[mode])
    torch.testing.assert_close(outs["segment"], outs["bmm"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grads["segment"], grads["bmm"], rtol=1e-5, atol=1e-6)


def test_rows_keep_the_callers_order_and_use_their_own_heads():
    bank = _bank()
    x = torch.randn(6, D, generator=torch.Generator().manual_seed(2))
    idx = torch.tensor([4, 1, 4, 0, 2, 1])
    batched = bank(x, idx)
    one_by_one = torch.cat([bank(x[i:i + 1], idx[i:i + 1]) for i in range(6)])
    torch.testing.assert_close(batched, one_by_one)


@pytest.mark.parametrize("mode", ["bmm", "segment"])
def test_swapping_head_idx_swaps_outputs_on_identical_inputs(mode):
    bank = _bank(num_heads=2, mode=mode)
    x = torch.randn(1, D).repeat(2, 1)                     # the same input twice
    out = bank(x, torch.tensor([0, 1]))
    assert not torch.allclose(out[0], out[1])              # two users, two different answers
    swapped = bank(x, torch.tensor([1, 0]))
    torch.testing.assert_close(swapped, out.flip(0))


@pytest.mark.parametrize("head_idx, expected", [
    ([], []),
    ([0], [(0, 0, 1)]),
    ([0, 0, 1, 1, 1, 5], [(0, 0, 2), (1, 2, 5), (5, 5, 6)]),
    ([2, 2, 0, 2], [(2, 0, 2), (0, 2, 3), (2, 3, 4)]),     # unsorted: a split head, still exact
])
def test_segments_table(head_idx, expected):
    assert segments(head_idx) == expected
    assert segments(torch.tensor(head_idx, dtype=torch.long)) == expected


def test_sort_by_head_is_stable_and_gives_one_segment_per_head():
    order, sorted_heads = sort_by_head(torch.tensor([2, 0, 2, 1, 0]))
    assert order.tolist() == [1, 4, 3, 0, 2]
    assert segments(sorted_heads) == [(0, 0, 2), (1, 2, 3), (2, 3, 5)]


def test_segments_rejects_2d_input():
    with pytest.raises(ValueError, match="1-D"):
        segments(torch.zeros(2, 2, dtype=torch.long))


def test_init_matches_nn_linear_bounds():
    bank = HeadBank(50, 64)
    bound = 1 / math.sqrt(64)
    for p in (bank.w1, bank.b1, bank.w2, bank.b2):
        assert p.abs().max() <= bound
        assert p.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.15)  # uniform's std


def test_same_generator_seed_gives_same_init():
    a, b = _bank(seed=7), _bank(seed=7)
    assert torch.equal(a.w1, b.w1) and not torch.equal(a.w1, _bank(seed=8).w1)


def test_extract_and_load_round_trip_between_banks():
    src, dst = _bank(seed=1), _bank(seed=2)
    dst.load(3, src.extract(0))
    x = torch.randn(4, D)
    torch.testing.assert_close(dst(x, torch.full((4,), 3)), src(x, torch.zeros(4, dtype=torch.long)))


def test_from_states_orders_heads():
    src = _bank()
    bank = HeadBank.from_states([src.extract(4), src.extract(2)], dropout=0.0).eval()
    assert bank.num_heads == 2
    x = torch.randn(3, D)
    torch.testing.assert_close(bank(x, torch.tensor([0, 0, 1])), src(x, torch.tensor([4, 4, 2])))


def test_from_states_needs_one_width():
    other = HeadBank(1, D + 1).extract(0)
    with pytest.raises(ValueError, match="same d"):
        HeadBank.from_states([_bank().extract(0), other])


def test_extract_is_a_copy():
    bank = _bank()
    state = bank.extract(0)
    state.w1.zero_()
    assert bank.w1[0].abs().sum() > 0


@pytest.mark.parametrize("shapes", [
    {"w1": (4, 4), "b1": (4,), "w2": (4, 3), "b2": (2,)},   # three classes
    {"w1": (4, 5), "b1": (4,), "w2": (4, 2), "b2": (2,)},   # not square
    {"w1": (4, 4), "b1": (5,), "w2": (4, 2), "b2": (2,)},
    {"w1": (4,), "b1": (4,), "w2": (4, 2), "b2": (2,)},
])
def test_head_state_rejects_bad_shapes(shapes):
    with pytest.raises(ValueError, match="shapes"):
        HeadState(**{name: torch.zeros(shape) for name, shape in shapes.items()})


def test_head_state_from_tensors_names_missing_and_extra():
    tensors = _bank().extract(0).tensors()
    tensors["bias3"] = tensors.pop("b2")
    with pytest.raises(ValueError, match=r"missing \['b2'\], unexpected \['bias3'\]"):
        HeadState.from_tensors(tensors)


@pytest.mark.parametrize("call, error", [
    (lambda b: b.load(0, HeadState(torch.zeros(3, 3), torch.zeros(3), torch.zeros(3, 2),
                                   torch.zeros(2))), ValueError),
    (lambda b: b.extract(5), IndexError),
    (lambda b: b.load(-1, b.extract(0)), IndexError),
    (lambda b: b(torch.zeros(2, D + 1), torch.zeros(2, dtype=torch.long)), ValueError),
    (lambda b: b(torch.zeros(2, D), torch.zeros(3, dtype=torch.long)), ValueError),
    (lambda b: b(torch.zeros(2, D), torch.tensor([0, 5])), IndexError),
    (lambda b: b(torch.zeros(2, D), torch.tensor([-1, 0])), IndexError),
])
def test_bad_calls_are_rejected(call, error):
    with pytest.raises(error):
        call(_bank())


@pytest.mark.parametrize("kwargs", [{"num_heads": 0, "dim": 4}, {"num_heads": 2, "dim": 0},
                                    {"num_heads": 2, "dim": 4, "mode": "auto"}])
def test_bad_constructor_arguments(kwargs):
    with pytest.raises(ValueError, match="got"):
        HeadBank(**kwargs)


def test_empty_batch_gives_empty_logits():
    assert _bank()(torch.zeros(0, D), torch.zeros(0, dtype=torch.long)).shape == (0, 2)
