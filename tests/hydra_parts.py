"""A real hydralm API in this process, for the unit tests of faults, bad input and security.

Everything is the real thing except the sizes: the FastAPI routes (`create_api`), `HydraService`,
the SQLite history store, the synth-tag task, a `LocalPairScorer` over a real registry whose base is
a tiny BERT (MiniLM's tokenizer, one 32-wide layer, random weights: scores in milliseconds), and a
`GeneratorClient` speaking HTTP to the fault-injection server on loopback. No Ray.

Import with `from hydra_parts import ...` (tests/ is on sys.path under pytest).
"""

from __future__ import annotations

import contextlib
import random
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from unit.generator.fault_server import FaultServer  # tests/unit/generator/fault_server.py

from hydralm.artifacts import Registry
from hydralm.generator import GeneratorClient, GeneratorConfig
from hydralm.history import SqliteHistoryStore
from hydralm.model import ModelConfig, default_encoder_path
from hydralm.pipeline import CandidateSampling, HistoryStore
from hydralm.scoring import LocalPairScorer, publish_random_registry
from hydralm.tasks import get_task
from serving.auth import Authenticator, KeyGrant, hash_key
from serving.config import RequestLimits
from serving.ingress import create_api
from serving.metrics import ServingMetrics
from serving.service import HydraService, PipelineSettings

__all__ = ["HISTORIES", "KEYS", "TRAINED_USERS", "Parts", "bearer", "running_api",
           "tiny_model_config"]

TRAINED_USERS = ("alice", "a:ann", "bob", "b:bea")      # users with their own heads
# Two tenants, disjoint users: a-keys act for alice and a:*, b-keys for bob and b:*.
KEYS = {"key-tenant-a-0123456789": {"tenant": "a", "users": ["alice"], "user_prefixes": ["a:"]},
        "key-tenant-b-9876543210": {"tenant": "b", "users": ["bob"], "user_prefixes": ["b:"]}}
HISTORIES = {
    "alice": [{"id": "a1", "description": "alice secret diary about robot gardens",
               "tag": "sci-fi"},
              {"id": "a2", "description": "alice secret letter from paris", "tag": "romance"}],
    "bob": [{"id": "b1", "description": "bob private notes on haunted lighthouses",
             "tag": "horror"}],
}
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                    "vocab.txt")


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def tiny_model_config(directory: Path) -> ModelConfig:
    """A one-layer, 32-wide BERT with MiniLM's tokenizer, saved under `directory`."""
    import torch
    from transformers import BertConfig, BertModel

    directory.mkdir(parents=True, exist_ok=True)
    for name in _TOKENIZER_FILES:
        shutil.copy(default_encoder_path() / name, directory / name)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=1,
                         num_attention_heads=2, intermediate_size=64,
                         max_position_embeddings=128)).save_pretrained(directory)
    return ModelConfig(encoder_path=str(directory), max_length=64)


@dataclass
class Parts:
    """The running app and its real parts, for tests to drive and inspect."""

    client: TestClient
    server: FaultServer
    generator: GeneratorClient
    history: HistoryStore
    registry: Registry
    scorer: LocalPairScorer
    root: Path


@contextlib.contextmanager
def running_api(root: Path, *, keys: dict[str, dict] | None = None,
                limits: RequestLimits | None = None,
                generator: dict[str, Any] | None = None,
                history: HistoryStore | None = None) -> Iterator[Parts]:
    """The app over fresh real parts under `root`; `keys` (plaintext -> grant) turns auth on,
    `generator` overrides GeneratorConfig fields (short timeouts by default), `history` replaces
    the SQLite store under `root` (e.g. a PostgresHistoryStore)."""
    registry = Registry(str(root / "registry"))
    publish_random_registry(registry, TRAINED_USERS, config=tiny_model_config(root / "bert"))
    history = SqliteHistoryStore(root / "history.db") if history is None else history
    for user, items in HISTORIES.items():
        history.append(user, items)
    scorer = LocalPairScorer(registry, poll_interval_s=0.2)
    table = {hash_key(k): KeyGrant.model_validate(v) for k, v in (keys or {}).items()}
    with FaultServer() as server:
        config = GeneratorConfig(**{
            "backend": "openai", "base_url": server.base_url, "timeout_s": 2.0,
            "max_retries": 1, "backoff_base_s": 0.01, "backoff_cap_s": 0.05,
            **(generator or {})})
        client = GeneratorClient(config, rng=random.Random(0))
        service = HydraService(task=get_task("synth-tag"), scorer=scorer, generator=client,
                               history=history, settings=PipelineSettings(sampling=CandidateSampling(n=4)))
        api = create_api(service, Authenticator(table), limits or RequestLimits(),
                         ServingMetrics())
        # One portal (one event loop) for the whole run, as in a Serve replica.
        with TestClient(api, raise_server_exceptions=False) as http:
            yield Parts(http, server, client, history, registry, scorer, root)
        scorer.close()
