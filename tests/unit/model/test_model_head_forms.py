"""Head forms: a low-rank bank computes what its formula says (and what a dense bank with
w1 = a @ b computes), in both modes; forms do not mix; fitting works for every form."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hydralm.errors import ArtifactError
from hydralm.model import (
    HeadBank,
    HeadConfig,
    HeadState,
    LowRankHeadState,
    check_head_config,
    fit_heads_on_embeddings,
)

D, R = 12, 3
LOWRANK = HeadConfig(form="lowrank", rank=R)
FORMS = [HeadConfig(), LOWRANK]


def _bank(head: HeadConfig, num_heads: int = 4, mode: str = "segment", seed: int = 0) -> HeadBank:
    return HeadBank(num_heads, D, dropout=0.0, mode=mode, head=head,
                    generator=torch.Generator().manual_seed(seed)).eval()


def _reference(state, x: torch.Tensor) -> torch.Tensor:
    """One head by its formula, row by row: tanh(x @ w1 + b1) @ w2 + b2."""
    w1 = state.a @ state.b if isinstance(state, LowRankHeadState) else state.w1
    return torch.tanh(x @ w1 + state.b1) @ state.w2 + state.b2


@pytest.mark.parametrize("head", FORMS, ids=lambda h: h.form)
@pytest.mark.parametrize("mode", ["segment", "bmm"])
def test_forward_matches_the_formula_of_each_rows_head(head, mode):
    bank = _bank(head, mode=mode)
    x = torch.randn(9, D, generator=torch.Generator().manual_seed(1))
    idx = torch.tensor([3, 0, 3, 1, 1, 2, 0, 3, 2])
    want = torch.stack([_reference(bank.extract(int(i)), x[r])
                        for r, i in enumerate(idx)])
    torch.testing.assert_close(bank(x, idx), want, rtol=1e-5, atol=1e-6)


def test_lowrank_equals_a_dense_head_with_the_product_as_w1():
    low = _bank(LOWRANK)
    dense = HeadBank.from_states([
        HeadState(s.a @ s.b, s.b1, s.w2, s.b2)
        for s in (low.extract(i) for i in range(low.num_heads))], dropout=0.0).eval()
    x = torch.randn(6, D, generator=torch.Generator().manual_seed(2))
    idx = torch.tensor([0, 1, 2, 3, 0, 1])
    torch.testing.assert_close(low(x, idx), dense(x, idx), rtol=1e-5, atol=1e-6)


def test_lowrank_modes_agree_in_gradients():
    x = torch.randn(8, D, generator=torch.Generator().manual_seed(3))
    idx = torch.tensor([0, 2, 2, 2, 1, 0, 3, 2])
    grads = {}
    for mode in ("segment", "bmm"):
        bank = _bank(LOWRANK, mode=mode)
        bank(x, idx).square().sum().backward()
        grads[mode] = (bank.a.grad.clone(), bank.b.grad.clone())
    for got, want in zip(grads["bmm"], grads["segment"], strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_lowrank_parameters_and_extracted_state_have_the_forms_shapes():
    bank = _bank(HeadConfig(form="lowrank", rank=R, dtype="int8"), num_heads=2)
    assert [tuple(p.shape) for p in bank.parameters()] == [
        (2, D, R), (2, R, D), (2, D), (2, D, 2), (2, 2)]
    state = bank.extract(1)
    assert isinstance(state, LowRankHeadState) and state.rank == R and state.dim == D
    assert state.config == HeadConfig(form="lowrank", rank=R, dtype="int8")
    assert sum(t.numel() for t in state.tensors().values()) == 2 * D * R + 3 * D + 2


def test_from_states_extract_and_load_round_trip_a_lowrank_head():
    states = [_bank(LOWRANK, seed=s).extract(0) for s in (4, 5)]
    bank = HeadBank.from_states(states, dropout=0.0)
    assert bank.head.shape_key == ("lowrank", R)
    assert torch.equal(bank.extract(1).a, states[1].a)
    bank.load(0, states[1])
    assert torch.equal(bank.extract(0).b, states[1].b)


@pytest.mark.parametrize("call, message", [
    (lambda: HeadBank.from_states([_bank(LOWRANK).extract(0), _bank(HeadConfig()).extract(0)]),
     "same d and form"),
    (lambda: _bank(LOWRANK).load(0, _bank(HeadConfig(form="lowrank", rank=R + 1)).extract(0)),
     "lowrank r=3 int8 heads"),
    (lambda: _bank(HeadConfig()).load(0, _bank(LOWRANK).extract(0)), "dense int8 heads"),
    (lambda: HeadBank(1, D, head=HeadConfig(form="lowrank", rank=D + 1)), "at most d=12"),
    (lambda: LowRankHeadState(torch.zeros(D, R), torch.zeros(R + 1, D), torch.zeros(D),
                              torch.zeros(D, 2), torch.zeros(2)), "must have shapes"),
])
def test_forms_do_not_mix(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_check_head_config_names_both_forms_and_ignores_the_storage_dtype():
    head = _bank(LOWRANK).extract(0)
    assert check_head_config(head, HeadConfig(form="lowrank", rank=R, dtype="int8"), "x") is head
    with pytest.raises(ArtifactError, match=r"head of user 'u' is a lowrank r=3 int8 head, but "
                                            r"the base expects dense float32 heads"):
        check_head_config(head, HeadConfig(dtype="float32"), "head of user 'u'")


def _separable(users: int, per_user: int, seed: int) -> tuple[torch.Tensor, ...]:
    """Each user labels rows by the sign of its own direction: a head must be per user."""
    g = torch.Generator().manual_seed(seed)
    directions = torch.randn(users, D, generator=g)
    x = torch.randn(users * per_user, D, generator=g)
    idx = torch.arange(users).repeat_interleave(per_user)
    labels = ((x * directions[idx]).sum(1) > 0).long()
    return x, idx, labels


@pytest.mark.parametrize("head", [*FORMS, HeadConfig(form="lowrank", rank=1, dtype="bfloat16")],
                         ids=lambda h: h.describe())
def test_fitting_works_for_each_form(head):
    x, idx, labels = _separable(users=3, per_user=48, seed=6)
    bank = fit_heads_on_embeddings(x, idx, labels, 3, head=head, epochs=30, lr=0.02,
                                   batch_size=16, dropout=0.0, weight_decay=0.0)
    assert bank.head == head and type(bank.extract(0)).form == head.form
    with torch.no_grad():
        accuracy = (bank(x, idx).argmax(1) == labels).float().mean()
        loss = F.cross_entropy(bank(x, idx), labels)
    assert accuracy > 0.9 and loss < 0.4


def test_fitting_takes_the_form_of_its_init():
    x, idx, labels = _separable(users=3, per_user=20, seed=7)
    init = _bank(HeadConfig(form="lowrank", rank=R, dtype="bfloat16"), num_heads=1,
                 seed=8).extract(0)
    bank = fit_heads_on_embeddings(x, idx, labels, 3, init=init, epochs=3, seed=2)
    assert bank.head == init.config
    for i in range(3):
        assert not torch.equal(bank.extract(i).a, init.a)      # every head moved from the init


@pytest.mark.parametrize("dtype", ["bfloat16", "int8"])
def test_heads_started_from_a_float32_global_head_store_in_the_configured_dtype(dtype):
    # fit.init: global (the default) hands a dense float32 head as init; the configured storage
    # dtype still decides how the fitted heads are saved (it once took the init's float32)
    from hydralm.artifacts.serialize import decode_head, encode_head

    x, idx, labels = _separable(users=2, per_user=20, seed=9)
    init = _bank(HeadConfig(dtype="float32"), num_heads=1, seed=10).extract(0)
    head = HeadConfig(dtype=dtype)
    bank = fit_heads_on_embeddings(x, idx, labels, 2, init=init, head=head, epochs=2, seed=3)
    state = bank.extract(0)
    assert bank.head == head and state.dtype == dtype
    ids = {"kind": "adapter", "user_id": "u", "base_version": "b"}
    data = encode_head(state, **ids)
    assert decode_head(data, "head").state.dtype == dtype
    assert len(data) < len(encode_head(init, **ids))     # smaller than the float32 file
    with pytest.raises(ValueError, match="head asks for lowrank"):
        fit_heads_on_embeddings(x, idx, labels, 2, init=init,
                                head=HeadConfig(form="lowrank", rank=R), epochs=1)


def test_job_and_eval_configs_choose_the_head_form_per_kind():
    from hydralm.jobconfig import JobConfig

    job = JobConfig.from_dict({"task": "synth-tag", "data": {"synth": {"users": 4}},
                               "reranker": {"head": {"form": "lowrank", "rank": 8,
                                                     "dtype": "bfloat16"}}})
    assert job.model("reranker").head.describe() == "lowrank r=8 bfloat16"
    assert job.model("adapter").head.describe() == "residual r=16 int8"   # the adapter's default


@pytest.mark.parametrize("settings, reranker, adapter", [
    ({}, "dense int8", "residual r=16 int8"),                                  # the defaults
    ({"adapter": {"max_length": 64}}, "dense int8", "residual r=16 int8"),    # no head named
    ({"adapter": {"head": {"dtype": "float32"}}}, "dense int8", "residual r=16 float32"),
    ({"adapter": {"head": {"form": "dense"}}}, "dense int8", "dense int8"),
    ({"adapter": {"head": {"form": "lowrank"}}}, "dense int8", "lowrank r=8 int8"),
    ({"adapter": {"head": {"rank": 4}}}, "dense int8", "residual r=4 int8"),
    ({"reranker": {"head": {"form": "residual"}}}, "residual r=8 int8", "residual r=16 int8"),
])
def test_each_kind_has_its_own_head_defaults_under_the_configs_settings(settings, reranker,
                                                                         adapter):
    """Per kind: a config naming no head form gets the kind's default form and rank (the
    reranker's are HeadConfig's) under its own other settings; one naming a form gets
    HeadConfig's defaults for the rest. In a job config and an eval config alike."""
    from hydralm.evaluation.config import EvalConfig
    from hydralm.jobconfig import JobConfig

    data = {"task": "synth-tag", "data": {"synth": {"users": 4}}, **settings}
    job = JobConfig.from_dict(data)
    evaluation = EvalConfig.from_dict({**data, "users": {"train": 2, "test": 2}})
    for config in (job, evaluation, evaluation.job(0)):
        assert config.reranker.head.describe() == reranker
        assert config.adapter.head.describe() == adapter


def test_the_adapters_default_residual_head_needs_the_global_head_and_says_so():
    from hydralm.errors import ConfigError
    from hydralm.jobconfig import JobConfig

    data = {"task": "synth-tag", "data": {"synth": {"users": 4}},
            "train": {"global_head": False}, "fit": {"init": "random"}}
    with pytest.raises(ConfigError, match=r"adapter head.form 'residual' \(the adapter's default"):
        JobConfig.from_dict(data)
    job = JobConfig.from_dict({**data, "adapter": {"head": {"form": "dense"}}})
    assert job.adapter.head == HeadConfig()
    with pytest.raises(ConfigError, match=r"reranker head.form 'residual' fits") as caught:
        JobConfig.from_dict({**data, "adapter": {"head": {"form": "dense"}},
                             "reranker": {"head": {"form": "residual"}}})
    assert "default" not in str(caught.value)


def test_a_built_model_config_keeps_its_head():
    """Code that builds a kind's ModelConfig has decided its head: no default is laid over it."""
    from hydralm.jobconfig import JobConfig
    from hydralm.model import ModelConfig

    job = JobConfig(task="synth-tag", data={"synth": {"users": 4}}, adapter=ModelConfig())
    assert job.adapter.head == HeadConfig()


@pytest.mark.parametrize("head, message", [
    ({"form": "sparse"}, "head.form"),
    ({"form": "lowrank", "rank": 0}, "head.rank"),
    ({"dtype": "float16"}, "head.dtype"),
    ({"form": "lowrank", "ranks": 8}, "head.ranks"),
])
def test_bad_head_settings_name_the_field(head, message):
    from hydralm.errors import ConfigError
    from hydralm.model import ModelConfig

    with pytest.raises(ConfigError, match=message):
        ModelConfig.from_dict({"head": head})


def test_a_residual_head_trained_dense_trains_the_papers_head_and_publishes_its_own_form():
    from hydralm.errors import ConfigError
    from hydralm.jobconfig import JobConfig
    from hydralm.model import ModelConfig
    from training.train_job import run_name

    model = ModelConfig.from_dict({"head": {"form": "residual", "rank": 16,
                                            "train_heads": "dense"}})
    assert model.for_training.head == HeadConfig(form="dense", dtype="float32")
    assert model.for_training.encoder_path == model.encoder_path and model.head.form == "residual"
    joint = ModelConfig.from_dict({"head": {"form": "residual", "rank": 16}})
    assert joint.for_training is joint
    for form in ("dense", "lowrank"):
        with pytest.raises(ConfigError, match=f"train_heads 'dense' is for the residual form.*"
                                              f"got form '{form}'"):
            ModelConfig.from_dict({"head": {"form": form, "train_heads": "dense"}})
    # the two trainings are two runs (a re-run never resumes the other's checkpoints)
    data = {"task": "synth-tag", "data": {"synth": {"users": 4}}}
    names = {run_name(JobConfig.from_dict({**data, "reranker": {"head": head}}), "reranker", [])
             for head in (joint.head.model_dump(), model.head.model_dump())}
    assert len(names) == 2
