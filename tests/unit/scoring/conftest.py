"""A tiny BERT (real architecture and MiniLM's tokenizer, random weights: fast) and registries
published with it, so scoring tests run the real encoder, bundle and registry code in seconds."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from hydralm.artifacts import Registry
from hydralm.model import ModelConfig, default_encoder_path
from hydralm.scoring import publish_random_registry

USERS = ["ann", "bob", "cyd", "dee", "eve"]   # test_batch_scorer.py relies on these
_TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                    "vocab.txt"]


@pytest.fixture(scope="session")
def tiny_config(tmp_path_factory) -> ModelConfig:
    import torch
    from transformers import BertConfig, BertModel

    src, dst = default_encoder_path(), tmp_path_factory.mktemp("tiny-bert")
    for name in _TOKENIZER_FILES:
        shutil.copy(Path(src) / name, dst / name)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=128)
    BertModel(config).save_pretrained(dst)
    return ModelConfig(encoder_path=str(dst), max_length=64)


@pytest.fixture(scope="session")
def _published(tmp_path_factory, tiny_config) -> Path:
    root = tmp_path_factory.mktemp("registry-template")
    publish_random_registry(Registry(str(root)), USERS, config=tiny_config, seed=1)
    return root


@pytest.fixture
def registry_dir(tmp_path, _published) -> Path:
    """A fresh copy of a registry with a random head per user in USERS, per kind, and global
    heads (each test may change its copy)."""
    root = tmp_path / "registry"
    shutil.copytree(_published, root)
    return root
