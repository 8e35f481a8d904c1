"""Publishing trained models as a base bundle: both kinds under one base version, the kind not
retrained carried over with its heads, and serving's bundle reader loading what training wrote."""

from __future__ import annotations

import logging

import pytest
import torch

from hydralm.artifacts import Registry
from hydralm.errors import NotFoundError
from hydralm.model import BaseEncoder, HeadBank, HeadConfig, HeadFitConfig, ModelConfig
from hydralm.pipeline import ADAPTER_PAIRS
from hydralm.scoring.bundle import bundle_head_configs, load_bundle_encoders, publish_bundle
from training.bases import (
    TrainedModel,
    bundle_config,
    load_kind_base,
    publish_models,
    republish_with_head,
)
from training.fit_heads import embeddings_table, fit_user_heads


def _trained(kind: str, encoder_dir, users: list[str], seed: int) -> TrainedModel:
    config = ModelConfig(encoder_path=str(encoder_dir), max_length=16)
    encoder = BaseEncoder.from_config(config)
    with torch.no_grad():
        for p in encoder.parameters():
            p.add_(seed)   # two kinds with visibly different weights
    bank = HeadBank(len(users) + 1, encoder.dim, generator=torch.Generator().manual_seed(seed))
    heads = {u: bank.extract(i) for i, u in enumerate(users)}
    return TrainedModel(kind, encoder.state_dict(), config, heads, bank.extract(len(users)),
                        {"run": f"{kind}-run", "global_step": seed})


def test_each_kind_is_published_and_the_other_carried_over(tmp_path, tiny_encoder):
    registry = Registry(str(tmp_path / "registry"))
    with pytest.raises(NotFoundError, match="run `hydralm train` first"):
        load_kind_base(registry, "reranker")
    reranker = _trained("reranker", tiny_encoder, ["a", "b"], seed=1)
    first = publish_models(registry, [reranker])
    assert bundle_config(registry)["kinds"].keys() == {"reranker"}
    stored = {user: registry.load_head("reranker", user).w1 for user in ("a", "b")}
    adapter = _trained("adapter", tiny_encoder, ["a", "c"], seed=2)
    second = publish_models(registry, [adapter])
    assert second != first and registry.base_version() == second
    config = bundle_config(registry)
    assert config["kinds"]["reranker"]["info"] == {"run": "reranker-run", "global_step": 1}
    # The reranker's heads were saved again for the new base and load unchanged (int8, the
    # default storage: quantizing a dequantized head again gives the same numbers).
    for user in ("a", "b"):
        assert torch.equal(registry.load_head("reranker", user).w1, stored[user])
        torch.testing.assert_close(stored[user], reranker.heads[user].w1, rtol=0, atol=2e-3)
    torch.testing.assert_close(registry.load_global_head("adapter").b2, adapter.global_head.b2,
                               rtol=1e-2, atol=0)
    assert registry.list_users("adapter") == ["a", "c"]
    assert registry.verify() == []
    # Serving's reader and training's agree on the weights of each kind.
    encoders = load_bundle_encoders(registry, ["reranker", "adapter"], second)
    mine, _ = load_kind_base(registry, "adapter")
    for key, value in adapter.base_state.items():
        assert torch.equal(encoders["adapter"].state_dict()[key], value)
        assert torch.equal(mine.state_dict()[key], value)
    assert not torch.equal(encoders["reranker"].state_dict()[key],
                           encoders["adapter"].state_dict()[key])


def test_heads_left_on_an_older_base_are_not_carried_over(tmp_path, tiny_encoder):
    """Train both kinds, fit a new user's heads, retrain the reranker, then the adapter: the new
    user's reranker head (fitted on the first base) is stale and must not stop the second
    publish; the fit stage refits it."""
    registry = Registry(str(tmp_path / "registry"))
    publish_models(registry, [_trained("reranker", tiny_encoder, ["a"], seed=1),
                              _trained("adapter", tiny_encoder, ["a"], seed=2)])
    fitted = _trained("reranker", tiny_encoder, ["new"], seed=3).heads["new"]
    registry.save_head("reranker", "new", fitted, registry.base_version())
    registry.save_head("adapter", "new", fitted, registry.base_version())
    saved = registry.load_head("adapter", "new").w1
    publish_models(registry, [_trained("reranker", tiny_encoder, ["a"], seed=4)])
    # the adapter's heads (new user's included) were carried to the new base; the reranker's
    # head of "new" is now on the old base
    assert torch.equal(registry.load_head("adapter", "new").w1, saved)
    third = publish_models(registry, [_trained("adapter", tiny_encoder, ["a"], seed=5)])
    assert registry.base_version() == third
    entry = registry.head_index("reranker")["new"]
    assert entry.base_version != third                      # still stale: refit, not carried
    assert registry.load_head("reranker", "a") is not None


_RESIDUAL = HeadConfig(form="residual", rank=4, dtype="bfloat16")


def _dense(kind: str, encoder_dir, seed: int) -> TrainedModel:
    """A kind trained with the paper's head: dense, stored in float32."""
    config = ModelConfig(encoder_path=str(encoder_dir), max_length=16,
                         head=HeadConfig(dtype="float32"))
    encoder = BaseEncoder.from_config(config)
    bank = HeadBank(3, encoder.dim, head=config.head,
                    generator=torch.Generator().manual_seed(seed))
    return TrainedModel(kind, encoder.state_dict(), config,
                        {"t1": bank.extract(0), "t2": bank.extract(1)}, bank.extract(2),
                        {"run": f"{kind}-run"})


def test_the_bases_are_republished_in_the_other_form_and_new_users_fit_there(tmp_path,
                                                                             tiny_encoder):
    source = Registry(str(tmp_path / "dense"))
    trained = [_dense("reranker", tiny_encoder, 1), _dense("adapter", tiny_encoder, 2)]
    publish_models(source, trained)
    target = Registry(str(tmp_path / "residual"))
    version = republish_with_head(source, target, _RESIDUAL)

    forms = bundle_head_configs(target, version)
    assert forms == {"reranker": _RESIDUAL, "adapter": _RESIDUAL}
    assert target.list_users("reranker") == [] == target.list_users("adapter")
    src, dst = source.load_base()[0], target.load_base()[0]
    assert src.keys() == dst.keys() and all(torch.equal(src[k], dst[k]) for k in src)
    for model in trained:
        assert torch.equal(target.load_global_head(model.kind).w1, model.global_head.w1)
        assert bundle_config(target)["kinds"][model.kind]["info"] == {"run": f"{model.kind}-run"}
        assert bundle_config(target)["kinds"][model.kind]["dim"] == model.global_head.dim
    # a re-run leaves the variant registry (and the heads fitted in it) as it is
    global_head = target.load_global_head("adapter")
    x = torch.randn(8, global_head.dim, generator=torch.Generator().manual_seed(0))
    table = embeddings_table(["new"] * 8, [0, 1] * 4, x.numpy())
    heads = fit_user_heads(table, ["new"], HeadFitConfig(epochs=2, batch_size=4),
                           max_users_per_fit=4, init=global_head, head=_RESIDUAL,
                           shared=global_head.w1)
    target.save_heads("adapter", heads, version)
    assert republish_with_head(source, target, _RESIDUAL) == version
    assert target.list_users("adapter") == ["new"]
    # another form is another publish; a dense one stores the global heads in its dtype too
    int8 = Registry(str(tmp_path / "int8"))
    assert republish_with_head(source, int8, HeadConfig(form="dense", dtype="int8")) != version
    for model in trained:
        stored, trained_w1 = int8.load_global_head(model.kind), model.global_head.w1
        assert stored.dtype == "int8" and not torch.equal(stored.w1, trained_w1)
        assert torch.allclose(stored.w1, trained_w1, atol=trained_w1.abs().max().item() / 100)
        assert target.load_global_head(model.kind).dtype == "float32"   # residual: kept
    # no form: each kind keeps its own (the guard's calibration registry)
    same = Registry(str(tmp_path / "same"))
    version = republish_with_head(source, same, None)
    assert bundle_head_configs(same, version) == bundle_head_configs(source,
                                                                     source.base_version())
    assert same.list_users("adapter") == []


def test_an_adapter_trained_on_another_pair_format_loads_with_a_warning(tmp_path, tiny_encoder,
                                                                        caplog):
    """A bundle records the adapter's pair format (its `info.pairs`, from the label manifest);
    an adapter without it (trained before c1e0897 on the prompt alone) still loads, with a
    warning naming the base and what to do."""
    registry = Registry(str(tmp_path / "registry"))
    old = publish_models(registry, [_trained("adapter", tiny_encoder, ["a"], seed=1)])
    with caplog.at_level(logging.WARNING, logger="hydralm.scoring.bundle"):
        load_bundle_encoders(registry, ["adapter"], old)
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert old in warning and "an older, unrecorded format" in warning and "Upgrades" in warning
    caplog.clear()
    trained = _trained("adapter", tiny_encoder, ["a"], seed=2)
    current = TrainedModel("adapter", trained.base_state, trained.model, trained.heads,
                           trained.global_head, {**trained.info, "pairs": ADAPTER_PAIRS})
    new = publish_models(registry, [current])
    assert bundle_config(registry)["kinds"]["adapter"]["info"]["pairs"] == ADAPTER_PAIRS
    with caplog.at_level(logging.WARNING, logger="hydralm.scoring.bundle"):
        load_bundle_encoders(registry, ["adapter"], new)
        # publish_bundle (fresh encoders: benchmarks, synthetic registries) records the format
        encoder = BaseEncoder.from_config(trained.model)
        fresh = publish_bundle(registry, {"adapter": (encoder, trained.model)})
        load_bundle_encoders(registry, ["adapter"], fresh)
    assert [r for r in caplog.records if r.levelno == logging.WARNING] == []


def test_registry_show_says_what_the_registry_holds(tmp_path, tiny_encoder, capsys):
    """`hydralm registry show`: the current base, each kind's head form and counts, the training
    run and the adapter's pair format, with a warning for an adapter trained on other pairs."""
    import json

    from hydralm.cli import main

    uri = str(tmp_path / "registry")
    assert main(["registry", "show", uri]) == 0
    assert "no base published yet" in capsys.readouterr().out
    registry = Registry(uri)
    reranker = _trained("reranker", tiny_encoder, ["a", "b", "c"], seed=1)
    old = publish_models(registry, [reranker, _trained("adapter", tiny_encoder, ["a"], seed=2)])
    assert main(["registry", "show", uri]) == 0
    out = capsys.readouterr().out
    assert f"current base {old} (1 published)" in out
    assert "reranker: 3 user heads (dense int8), a global head on it; run reranker-run;" in out
    assert "adapter: 1 user heads (dense int8), a global head on it; run adapter-run;" in out
    assert "warning: the adapter was trained on pairs of an older, unrecorded format" in out
    adapter = _trained("adapter", tiny_encoder, ["a", "d"], seed=3)
    publish_models(registry, [TrainedModel("adapter", adapter.base_state, adapter.model,
                                           adapter.heads, None,
                                           {**adapter.info, "pairs": ADAPTER_PAIRS})])
    assert main(["registry", "show", uri, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["bases"] == 2 and summary["base_version"] == registry.base_version()
    assert summary["warnings"] == []
    assert summary["kinds"]["adapter"]["info"]["pairs"] == ADAPTER_PAIRS
    assert summary["kinds"]["adapter"]["heads"] == 2
    assert summary["kinds"]["adapter"]["global_head"] is False   # this adapter came without one
    assert summary["kinds"]["reranker"]["global_head"] is True
    assert summary["kinds"]["reranker"]["heads"] == 3      # carried over to the new base
    assert summary["kinds"]["reranker"]["head"] == {"form": "dense", "rank": 8, "dtype": "int8",
                                                  "train_heads": "form"}
