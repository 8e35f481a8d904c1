"""Failures of the training job on a local Ray: a killed Train worker resumes from the last
checkpoint, a failed fit job re-run fits only the users left, and bad configs fail clearly.

The job's reranker head is residual with `train_heads: dense` (the loop trains the paper's dense
heads, then the training users' heads are fitted as residual heads on the frozen base through the
fit stage's tasks): one trained job covers that path too, the resume and the fit failures run on
it. Labels are written directly (tests/training_fixtures.py) and the encoder is a tiny random
BERT, so these run without the generator in seconds.
"""

from __future__ import annotations

import re
import uuid

import pytest
import torch
from training_fixtures import build_tiny_encoder, tiny_job, write_fake_labels

from hydralm.artifacts import Registry
from hydralm.cli import main
from hydralm.data import user_bucket
from hydralm.model import HeadState, ResidualHeadState, shared_digest
from hydralm.scoring.bundle import bundle_head_configs
from training.loop import CHECKPOINT_FILE
from training.stages import fit_stage, train_stage
from training.train_job import fit_training_heads
from training.users import load_split

pytestmark = pytest.mark.integration

DENSE_TRAINED = {"form": "residual", "rank": 2, "dtype": "int8", "train_heads": "dense"}


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    return build_tiny_encoder(tmp_path_factory.mktemp("tiny-encoder"))


@pytest.fixture(scope="module")
def resumed_job(ray_local, tmp_path_factory, encoder):
    """A reranker trained with 2 DDP workers, rank 0 killed once after its 4th step's
    checkpoint: (job config, train summary, crash marker)."""
    mp = pytest.MonkeyPatch()
    # Ray Train propagates this to its controller: a dead worker is noticed within 0.2 s.
    mp.setenv("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")
    tmp = tmp_path_factory.mktemp("resume")
    cfg = tiny_job(tmp / "job", encoder, reranker={"head": DENSE_TRAINED}, train={
        "epochs": 2, "batch_size": 8, "num_workers": 2, "cpus_per_worker": 0.5,
        "max_failures": 1, "checkpoint_every_steps": 1, "run_name": f"resume-{uuid.uuid4().hex}"})
    write_fake_labels(cfg)   # 6 training users x 12 pairs = 72 pairs: 9 steps of 8 per epoch
    marker = tmp / "crashed-once"
    try:
        summary = train_stage(cfg, ["reranker"], progress=False,
                              crash_once={"marker": str(marker), "after_step": 4})
    finally:
        mp.undo()
    return cfg, summary, marker


def test_train_resumes_from_a_checkpoint_after_a_killed_worker(resumed_job):
    cfg, summary, marker = resumed_job
    (run,) = summary["models"]
    assert marker.exists(), "the worker was never killed"
    # The restarted workers began at a checkpoint of the first attempt, not at step 0 ...
    assert 1 <= run["resumed_from"] <= 4, run
    # ... and the run still did all 18 steps of its 2 epochs.
    assert (run["epochs"], run["global_step"]) == (2, 18)
    registry = Registry(cfg.paths.registry)
    assert registry.list_users("reranker") == sorted(load_split(cfg).train)
    assert registry.verify() == []


def test_training_users_heads_are_fitted_as_residual_heads_after_dense_training(resumed_job):
    cfg, summary, _ = resumed_job
    split = load_split(cfg)
    registry = Registry(cfg.paths.registry)
    # the loop trained dense heads: a d x d first layer per training user and for the global head
    state = torch.load(f"{summary['models'][0]['checkpoint']}/{CHECKPOINT_FILE}",
                       map_location="cpu", weights_only=False)["model"]
    w1 = next(v for k, v in state.items() if k.endswith("heads.w1"))
    assert w1.shape[0] == len(split.train) + 1 and w1.shape[1] == w1.shape[2]
    # the registry holds the configured form only: the base records it, the global head is dense
    # float32, and every training user's head is a fitted residual int8 head on its w1
    head = bundle_head_configs(registry, registry.base_version())["reranker"]
    assert head.model_dump() == DENSE_TRAINED
    glob = registry.load_global_head("reranker")
    assert isinstance(glob, HeadState) and glob.dtype == "float32"
    (fitted,) = summary["training_heads_fitted"]
    assert fitted["fitted"] == len(split.train)
    for user in split.train:
        head = registry.load_head("reranker", user)
        assert isinstance(head, ResidualHeadState) and head.dtype == "int8"
        assert head.shared == shared_digest(glob.w1) and torch.count_nonzero(head.b) > 0
    assert fit_training_heads(cfg, split, ["reranker"], progress=False) == []   # none left


def _buckets_apart(users: tuple[str, ...]) -> int:
    """A bucket count that puts the first two users in different buckets."""
    return next(n for n in range(2, 64) if user_bucket(users[0], n) != user_bucket(users[1], n))


def test_a_failed_fit_job_rerun_fits_only_the_users_left(resumed_job):
    cfg, _, _ = resumed_job
    new_users = load_split(cfg).test
    cfg = cfg.model_copy(update={"fit": cfg.fit.model_copy(
        update={"num_buckets": _buckets_apart(new_users), "epochs": 3})})
    buckets = {u: user_bucket(u, cfg.fit.num_buckets) for u in new_users}
    failing = buckets[new_users[0]]
    with pytest.raises(RuntimeError, match=f"injected failure in bucket {failing}"):
        fit_stage(cfg, ["reranker"], progress=False, crash_bucket=failing)
    registry = Registry(cfg.paths.registry)
    index = registry.head_index("reranker")
    done = {u for u in new_users if u in index}
    assert done == {u for u, b in buckets.items() if b != failing} and done
    assert registry.verify() == []
    before = {u: index[u].sha256 for u in done}

    summary = fit_stage(cfg, ["reranker"], progress=False)
    (fit,) = summary["models"]
    assert (fit["already_fitted"], fit["fitted"]) == (len(done), len(new_users) - len(done))
    index = registry.head_index("reranker")
    assert all(u in index for u in new_users)
    assert {u: index[u].sha256 for u in done} == before   # the first run's heads were kept
    assert registry.verify() == []


@pytest.mark.parametrize("command, body, message", [
    ("train", "train: {epoch: 2}", "train.epoch: Extra inputs are not permitted"),
    ("fit-users", "fit: {num_buckets: 0}", "fit.num_buckets: Input should be greater than"),
    ("labels", "users: {num_test_users: 9}",
     "users.num_test_users is 9, but there are only 7 users in the pool"),
    ("train", "", "no reranker train labels in .* run `hydralm labels"),
    ("fit-users", "", "no base in .*: run `hydralm train` first"),
])
def test_bad_configs_fail_with_a_clear_message(ray_local, tmp_path, capsys, command, body,
                                               message):
    path = tmp_path / "job.yaml"
    path.write_text(f"task: synth-tag\ndata: {{synth: {{users: 8}}}}\nwork_dir: {tmp_path}/w\n"
                    f"{body}\n")
    assert main([command, "--config", str(path), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert f"hydralm {command}: error:" in err
    assert re.search(message, err), err
