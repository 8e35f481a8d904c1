"""A compact head form through training: the train loop learns with low-rank heads, publishing
records the form in the base bundle, and fitting new users follows the base's form."""

from __future__ import annotations

import torch
from training_fixtures import two_taste_labels

from hydralm.artifacts import Registry
from hydralm.jobconfig import TrainConfig
from hydralm.model import BaseEncoder, HeadConfig, LowRankHeadState, ModelConfig
from hydralm.scoring.bundle import bundle_head_configs
from training.bases import TrainedModel, bundle_config, publish_models
from training.fit_heads import embeddings_table, fit_user_heads
from training.loop import CHECKPOINT_FILE, LocalSession, LoopSpec, train_loop
from training.model_build import build_joint_model

COMPACT = HeadConfig(form="lowrank", rank=2, dtype="int8")



def test_the_train_loop_learns_with_lowrank_heads(tmp_path, tiny_encoder):
    model = ModelConfig(encoder_path=str(tiny_encoder), max_length=24, dropout=0.0, head=COMPACT)
    spec = LoopSpec(label_files=(two_taste_labels(tmp_path),), users=("a", "b"), model=model,
                    train=TrainConfig(epochs=6, batch_size=8, lr=1e-3, head_lr=3e-2, seed=0))
    session = LocalSession(tmp_path / "ckpt")
    train_loop(spec, session)
    losses = [m["loss"] for m in session.reported]
    assert sum(losses[-2:]) < 0.75 * sum(losses[:2]), losses
    latest = sorted((tmp_path / "ckpt").glob("checkpoint_*"))[-1]
    state = torch.load(latest / CHECKPOINT_FILE, map_location="cpu", weights_only=False)
    joint = build_joint_model(model, num_users=2, global_head=True, seed=0)
    joint.load_state_dict(state["model"])                 # the checkpoint holds factors a, b
    head = joint.heads.extract(0)
    assert isinstance(head, LowRankHeadState) and head.config == COMPACT


def test_publishing_records_the_form_and_fitting_follows_the_bases_form(tmp_path, tiny_encoder):
    config = ModelConfig(encoder_path=str(tiny_encoder), max_length=16, head=COMPACT)
    encoder = BaseEncoder.from_config(config)
    joint = build_joint_model(config, num_users=1, global_head=True, seed=0)
    trained = TrainedModel("adapter", encoder.state_dict(), config,
                           {"a": joint.heads.extract(0)}, joint.heads.extract(1), {})
    registry = Registry(str(tmp_path / "registry"))
    version = publish_models(registry, [trained])
    assert bundle_config(registry)["kinds"]["adapter"]["model"]["head"] == COMPACT.model_dump()
    form = bundle_head_configs(registry, version)["adapter"]
    assert registry.load_head("adapter", "a").config == form == COMPACT

    generator = torch.Generator().manual_seed(1)
    vectors = torch.randn(12, encoder.dim, generator=generator).numpy()
    table = embeddings_table(["new"] * 12, [i % 2 for i in range(12)], vectors)
    for init in (registry.load_global_head("adapter"), None):
        heads = fit_user_heads(table, ["new"], _fit_config(), max_users_per_fit=4, init=init,
                               head=form)
        registry.save_heads("adapter", heads, version)
        assert registry.load_head("adapter", "new").config == COMPACT


def _fit_config():
    from hydralm.model import HeadFitConfig

    return HeadFitConfig(epochs=2, batch_size=4)
