"""Residual heads end to end: fitting trains only the per-user tensors on the frozen shared layer
and starts new users at the global head; training learns the shared layer as the global head's w1
and publishes that head dense; scoring stacks the users' heads with the global head on that layer
and refuses a head that names another one; train -> fit -> score on the tiny encoder."""

from __future__ import annotations

import pytest
import torch
from training_fixtures import tiny_job, two_taste_labels

from hydralm.artifacts import Registry
from hydralm.errors import ArtifactError, NotFoundError, StaleHeadError
from hydralm.jobconfig import TrainConfig
from hydralm.model import (
    HeadBank,
    HeadConfig,
    HeadFitConfig,
    HeadState,
    ModelConfig,
    ResidualHeadState,
    fit_heads_on_embeddings,
    shared_digest,
)
from hydralm.pipeline import reranker_pairs
from hydralm.scoring.bundle import bundle_head_configs
from hydralm.scoring.forward import ForwardJob, score_jobs, temporary_bank
from hydralm.scoring.registry_view import RegistryView
from hydralm.tasks import get_task
from training.bases import TrainedModel, load_kind_base, publish_models
from training.fit_heads import embeddings_table, fit_user_heads
from training.loop import LocalSession, LoopSpec, train_loop
from training.rerank import RerankSpec, load_rerank
from training.train_job import _trained_from_checkpoint

D, R = 10, 3
RESIDUAL = HeadConfig(form="residual", rank=R)


def _randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _global(seed: int = 0, dim: int = D) -> HeadState:
    return HeadState(_randn(dim, dim, seed=seed) / dim ** 0.5, _randn(dim, seed=seed + 1),
                     _randn(dim, 2, seed=seed + 2), _randn(2, seed=seed + 3))


def _dense_equivalent(head: ResidualHeadState, w1: torch.Tensor) -> HeadState:
    return HeadState(w1 + head.a @ head.b, head.b1, head.w2, head.b2)


# -- fitting ---------------------------------------------------------------------------------------

def test_fitting_moves_only_the_per_user_tensors_and_starts_at_the_global_head():
    g = _global()
    x, labels = _randn(12, D, seed=4), torch.tensor([0, 1] * 6)
    head_idx = torch.tensor([0] * 8 + [1] * 4)          # head 2 has no rows
    bank = fit_heads_on_embeddings(x, head_idx, labels, 3, epochs=4, lr=1e-2, batch_size=4,
                                   init=g, head=RESIDUAL, shared=g.w1)
    assert torch.equal(bank.shared_w1.detach(), g.w1)                 # frozen
    heads = [bank.extract(i) for i in range(3)]
    assert all(isinstance(h, ResidualHeadState) and h.shared == shared_digest(g.w1)
               for h in heads)
    assert torch.count_nonzero(heads[0].b) > 0 and torch.count_nonzero(heads[1].b) > 0
    assert torch.count_nonzero(heads[2].b) == 0                      # never stepped: the global
    for name in ("b1", "w2", "b2"):
        assert torch.equal(getattr(heads[2], name), getattr(g, name))
    assert not torch.equal(heads[0].w2, g.w2)
    # a dense init whose w1 is not the shared layer is refused
    with pytest.raises(ValueError, match="w1 must be their shared first layer"):
        fit_heads_on_embeddings(x, head_idx, labels, 3, init=g, head=RESIDUAL,
                                shared=_global(seed=9).w1)
    with pytest.raises(ValueError, match="needs its kind's shared first layer"):
        fit_heads_on_embeddings(x, head_idx, labels, 3, head=RESIDUAL)


def test_the_hand_written_residual_gradients_match_autograd():
    """One AdamW step of the batched loop (all rows in one batch, no dropout) equals autograd +
    torch.optim.AdamW over a, b, b1, w2, b2 with the shared layer frozen."""
    g = _global()
    start = ResidualHeadState(_randn(D, R, seed=1), _randn(R, D, seed=2) / 3, g.b1, g.w2, g.b2,
                              shared=shared_digest(g.w1))
    x, labels = _randn(6, D, seed=5), torch.tensor([1, 0, 0, 1, 1, 0])
    idx = torch.zeros(6, dtype=torch.long)
    fitted = fit_heads_on_embeddings(x, idx, labels, 1, epochs=1, lr=1e-2, batch_size=6,
                                     dropout=0.0, init=start, shared=g.w1).extract(0)
    ref = HeadBank.from_states([start], dropout=0.0, shared=g.w1)
    ref.shared_w1.requires_grad_(False)
    params = [getattr(ref, n) for n in ref.names]
    opt = torch.optim.AdamW(params, lr=1e-2, weight_decay=0.01)
    torch.nn.functional.cross_entropy(ref(x, idx), labels).backward()
    opt.step()
    want = ref.extract(0)
    for name in ref.names:
        torch.testing.assert_close(getattr(fitted, name), getattr(want, name),
                                   rtol=1e-5, atol=1e-6)


# -- scoring ---------------------------------------------------------------------------------------

def test_a_scoring_bank_stacks_residual_heads_with_the_global_head():
    g = _global()
    users = fit_heads_on_embeddings(_randn(8, D, seed=3), torch.tensor([0, 0, 0, 0, 1, 1, 1, 1]),
                                    torch.tensor([0, 1] * 4), 2, epochs=3, lr=1e-2,
                                    init=g, head=RESIDUAL, shared=g.w1)
    heads = [users.extract(i).with_layer(g.w1) for i in range(2)]
    bank = temporary_bank([heads[0], g, heads[1]], "cpu")
    dense = temporary_bank([_dense_equivalent(heads[0], g.w1), g,
                            _dense_equivalent(heads[1], g.w1)], "cpu")
    x, idx = _randn(6, D, seed=7), torch.tensor([0, 1, 2, 2, 1, 0])
    torch.testing.assert_close(bank(x, idx), dense(x, idx), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="fitted on the shared first layer"):
        heads[0].with_layer(_global(seed=9).w1)
    with pytest.raises(ValueError, match="fitted on the shared first layer"):
        temporary_bank([heads[0], _global(seed=9)], "cpu")     # a global head on another w1
    with pytest.raises(ValueError, match="needs its shared first layer attached"):
        temporary_bank([users.extract(0)], "cpu")


# -- training and the whole flow -------------------------------------------------------------------

def test_train_fit_score_with_residual_heads(tmp_path, tiny_encoder):
    model = ModelConfig(encoder_path=str(tiny_encoder), max_length=24, dropout=0.0,
                        head=HeadConfig(form="residual", rank=2, dtype="bfloat16"))
    spec = LoopSpec(label_files=(two_taste_labels(tmp_path),), users=("a", "b"), model=model,
                    train=TrainConfig(epochs=3, batch_size=8, lr=1e-3, head_lr=3e-2, seed=0))
    train_loop(spec, LocalSession(tmp_path / "ckpt"))
    latest = sorted((tmp_path / "ckpt").glob("checkpoint_*"))[-1]
    trained = _trained_from_checkpoint(latest, spec, "reranker", "run", {}, {"shards": []})
    # an adapter's info names the pair format of the label manifest it was trained on
    assert "pairs" not in trained.info
    as_adapter = _trained_from_checkpoint(latest, spec, "adapter", "run", {},
                                          {"shards": [], "pairs": "query+prompt/1"})
    assert as_adapter.info["pairs"] == "query+prompt/1"

    # training: the global head is dense float32 with w1 = the trained shared layer, the users'
    # heads are residual (stored bf16) and name it
    g = trained.global_head
    assert isinstance(g, HeadState) and g.dtype == "float32"
    fresh = HeadBank.fresh_shared(g.dim, torch.Generator().manual_seed(0))
    assert not torch.allclose(g.w1, fresh)                              # the layer was trained
    digest = shared_digest(g.w1)
    assert {u: (type(h), h.shared, h.dtype) for u, h in trained.heads.items()} == {
        u: (ResidualHeadState, digest, "bfloat16") for u in ("a", "b")}

    registry = Registry(str(tmp_path / "registry"))
    version = publish_models(registry, [trained])
    form = bundle_head_configs(registry, version)["reranker"]
    assert form == model.head

    # the reranker ordering a training user's adapter prompts (training/rerank.py) scores with
    # their residual head on the global head's w1; a user without a head gets the global head
    task = get_task("synth-tag")
    items = [{"description": f"{f} {f}"} for f in ("apple", "pear", "plum", "fig")]
    rerank = load_rerank(RerankSpec(registry.storage.uri, version, "t", user_heads=True), task)
    encoder, _ = load_kind_base(registry, "reranker", version=version)
    firsts, seconds = reranker_pairs(task, "which fruit to buy", items)
    stored = registry.load_global_head("reranker")
    for user, head in (("a", _dense_equivalent(registry.load_head("reranker", "a"), stored.w1)),
                       ("nobody", stored)):
        want = score_jobs(encoder, [ForwardJob(firsts, seconds, head)], max_pairs=16)[0]
        assert rerank(user, "which fruit to buy", items) == pytest.approx(want, abs=1e-5)

    # fitting a new user (what training/fit_job.py's bucket task does): on the global head's w1
    encoder, _ = load_kind_base(registry, "reranker", version=version)
    firsts = ["which fruit to buy"] * 8
    seconds = [f"{f} {f}" for f in ["apple", "pear", "plum", "fig"] * 2]
    table = embeddings_table(["c"] * 8, [int("plum" in s) for s in seconds],
                             encoder.embed(firsts, seconds).numpy())
    global_head = registry.load_global_head("reranker")
    heads = fit_user_heads(table, ["c"], HeadFitConfig(epochs=40, lr=3e-2, batch_size=4),
                           max_users_per_fit=4, init=global_head, head=form,
                           shared=global_head.w1)
    registry.save_heads("reranker", heads, version)

    # scoring: users' heads on the global head's w1, one forward with the global head
    view = RegistryView(registry)
    encoder = view.load_encoders(["reranker"], version, "cpu")[0]["reranker"]
    c, a = (view.load_head("reranker", u, version) for u in ("c", "a"))
    shared = view.load_global_head("reranker", version)
    assert isinstance(c, ResidualHeadState) and c.layer is not None
    assert torch.equal(c.layer, shared.w1)
    jobs = [ForwardJob(firsts, seconds, c), ForwardJob(firsts[:2], seconds[:2], shared),
            ForwardJob(firsts[:3], seconds[:3], a)]
    got = score_jobs(encoder, jobs, max_pairs=16)
    want = score_jobs(encoder, [ForwardJob(j.firsts, j.seconds, _dense_equivalent(j.head, shared.w1)
                                           if isinstance(j.head, ResidualHeadState) else j.head)
                                for j in jobs], max_pairs=16)
    for g_scores, w_scores in zip(got, want, strict=True):
        assert g_scores == pytest.approx(w_scores, abs=1e-5)
    liked = got[0][2::4]                    # c likes plums: its head learned them on this layer
    assert min(liked) > max(s for i, s in enumerate(got[0]) if i % 4 != 2)

    # a head fitted on another shared layer is refused (the user falls back to the global head)
    other = fit_user_heads(table, ["c"], HeadFitConfig(epochs=1), max_users_per_fit=4,
                           init=None, head=form, shared=_global(seed=5, dim=g.dim).w1)
    registry.save_heads("reranker", {"d": other["c"]}, version)
    with pytest.raises(StaleHeadError, match="refit it"):
        view.load_head("reranker", "d", version)


def test_residual_heads_need_a_global_head(tmp_path):
    residual = {"head": {"form": "residual"}}
    with pytest.raises(ValueError, match="train.global_head is false"):
        tiny_job(tmp_path, tmp_path, reranker=residual, train={"global_head": False})
    assert tiny_job(tmp_path, tmp_path, adapter=residual).adapter.head.form == "residual"
    bad = TrainedModel("adapter", {}, ModelConfig(head=RESIDUAL),
                       {"u": ResidualHeadState(_randn(D, R, seed=1), _randn(R, D, seed=2),
                                               _randn(D, seed=3), _randn(D, 2, seed=4),
                                               _randn(2, seed=5), shared="0" * 64)},
                       _global(), {})
    with pytest.raises(ArtifactError, match="do not name the global head's w1"):
        publish_models(Registry(str(tmp_path / "registry")), [bad])
    assert issubclass(StaleHeadError, NotFoundError)
