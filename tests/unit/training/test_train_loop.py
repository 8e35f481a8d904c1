"""The per-worker train loop as a plain function in one process (no Ray): it learns, checkpoints,
and resumes where it stopped."""

from __future__ import annotations

import random

import pytest
import torch

from hydralm.jobconfig import TrainConfig
from hydralm.labels import LabelRecord, labels_to_table
from hydralm.model import ModelConfig
from training.files import write_parquet
from training.loop import LocalSession, LoopSpec, global_batches, train_loop

FRUITS = ["apple", "pear", "plum", "fig"]


def _labels(tmp_path) -> str:
    """Two users with different tastes: a likes apples, b likes pears. Learnable only per user."""
    rng = random.Random(0)
    rows = []
    for user, liked in (("a", "apple"), ("b", "pear")):
        for i in range(16):
            fruit = FRUITS[i % len(FRUITS)]
            second = f"{fruit} {fruit} {rng.randint(1, 9)}"
            rows.append(LabelRecord(
                model="reranker", stage="train", user_id=user, query_id=f"q{i}", source="query",
                item_id=str(i), first="which fruit to buy", second=second, answer="", gold="",
                score=0.0, label=int(fruit == liked)))
    uri = str(tmp_path / "labels.parquet")
    write_parquet(uri, labels_to_table(rows))
    return uri


@pytest.fixture()
def spec_for(tiny_encoder):
    def make(uri: str, epochs: int, users: tuple[str, ...] = ("a", "b")) -> LoopSpec:
        return LoopSpec(
            label_files=(uri,), users=users,
            model=ModelConfig(encoder_path=str(tiny_encoder), max_length=24, dropout=0.0),
            train=TrainConfig(epochs=epochs, batch_size=8, lr=1e-3, head_lr=3e-2, seed=0))
    return make


def test_loss_goes_down_in_one_process(tmp_path, spec_for):
    session = LocalSession(tmp_path / "ckpt")
    final = train_loop(spec_for(_labels(tmp_path), epochs=6), session)
    losses = [m["loss"] for m in session.reported]  # one mean loss per epoch
    assert len(losses) == 6 and final["epoch"] == 6 and final["global_step"] == 24
    assert sum(losses[-2:]) < 0.75 * sum(losses[:2]), losses
    assert final["resumed_from"] == -1
    assert len(list((tmp_path / "ckpt").glob("checkpoint_*"))) == 6


def test_a_rerun_resumes_from_the_latest_checkpoint(tmp_path, spec_for):
    uri = _labels(tmp_path)
    first = LocalSession(tmp_path / "ckpt")
    train_loop(spec_for(uri, epochs=1), first)
    second = LocalSession(tmp_path / "ckpt")
    final = train_loop(spec_for(uri, epochs=2), second)
    # The second run starts after the first run's 4 steps and does only the second epoch.
    assert final["resumed_from"] == 4
    assert [m["epoch"] for m in second.reported] == [2]
    assert final["global_step"] == 8
    # Running a finished run again trains nothing and reports the same position.
    third = LocalSession(tmp_path / "ckpt")
    again = train_loop(spec_for(uri, epochs=2), third)
    assert again["global_step"] == 8 and again["resumed_from"] == 8
    assert again["loss"] == final["loss"]   # the finished run's last loss, reported again


@pytest.mark.parametrize("n, batch_size", [(10, 4), (3, 8), (8, 8)])
def test_global_batches_are_full_and_cover_every_row(n, batch_size):
    batches = global_batches(n, batch_size, seed=1, epoch=2)
    size = min(n, batch_size)
    assert all(len(b) == size for b in batches)
    assert set(torch.cat(batches).tolist()) == set(range(n))
    # Every worker draws the same order for an epoch; the next epoch reshuffles.
    assert [b.tolist() for b in batches] == [
        b.tolist() for b in global_batches(n, batch_size, seed=1, epoch=2)]
    orders = {tuple(torch.cat(global_batches(10, 4, seed=1, epoch=e)).tolist()) for e in range(4)}
    assert len(orders) > 1


def test_no_rows_for_the_users_is_an_error(tmp_path, spec_for):
    spec = spec_for(_labels(tmp_path), epochs=1, users=("nobody",))
    with pytest.raises(ValueError, match="hold no rows of the 1 training users"):
        train_loop(spec, LocalSession(tmp_path / "ckpt"))


def test_micro_batches_give_the_same_step_as_whole_batches(tmp_path, spec_for):
    import copy

    from training.loop import _step
    from training.model_build import build_joint_model, load_label_rows

    spec = spec_for(_labels(tmp_path), epochs=1)
    rows = load_label_rows(spec.label_files, spec.users)
    model = build_joint_model(spec.model, num_users=2, global_head=True, seed=0)
    updated = []
    for micro in (None, 3):
        copy_ = copy.deepcopy(model)
        cfg = spec.train.model_copy(update={"micro_batch_size": micro})
        # Plain SGD: the update is the gradient itself (Adam would magnify rounding noise).
        _step(copy_, copy_, rows, torch.arange(10), torch.optim.SGD(copy_.parameters(), lr=1.0),
              cfg)
        updated.append(copy_.state_dict())
    whole, micro = updated
    for key in whole:
        assert torch.allclose(whole[key], micro[key], atol=1e-5), key
