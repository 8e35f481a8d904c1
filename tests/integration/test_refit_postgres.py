"""Refit planning against the real PostgreSQL history store (no Ray): the store named by
`refit.history_backend: postgres` and the DSN from the environment, its versions paged through, and
the registry's recorded versions deciding who is refit."""

from __future__ import annotations

import pytest
from training_fixtures import build_tiny_encoder, tiny_job

from hydralm.artifacts import Registry
from hydralm.model import ModelConfig
from hydralm.scoring import publish_random_registry, random_heads
from training.refit import plan_refit_run
from training.refit_labels import open_history_store

pytestmark = pytest.mark.integration


def _items(prefix: str, n: int) -> list[dict]:
    return [{"id": f"{prefix}{k}", "description": f"{prefix} film {k}", "tag": "comedy"}
            for k in range(n)]


def test_a_refit_plan_reads_the_postgres_store(postgres, monkeypatch, tmp_path):
    monkeypatch.setenv("HYDRALM_HISTORY_DSN", postgres.create_database())
    encoder = build_tiny_encoder(tmp_path / "encoder")
    cfg = tiny_job(tmp_path / "job", encoder,
                   refit={"history_backend": "postgres", "min_items": 3, "page_size": 2})
    store = open_history_store(cfg.refit)
    for user, n in (("same", 4), ("grew", 4), ("newcomer", 5), ("sparse", 2)):
        store.append(user, _items(user, n))
    registry = Registry(cfg.paths.registry)
    config = ModelConfig(encoder_path=str(encoder), max_length=32)
    version = publish_random_registry(registry, [], config=config, kinds=["reranker"])
    heads = random_heads(2, 32, seed=3)
    registry.save_heads("reranker", {"same": heads[0], "grew": heads[1]}, version,
                        history_versions={"same": store.version("same"),
                                          "grew": store.version("grew")})
    store.append("grew", _items("late", 1))
    (plan,) = plan_refit_run(cfg, ["reranker"]).plans
    assert plan.pending == {"grew": store.version("grew"), "newcomer": store.version("newcomer")}
    assert {k: plan.counts[k] for k in ("users", "unchanged", "changed", "new", "below_min")} == {
        "users": 4, "unchanged": 1, "changed": 1, "new": 1, "below_min": 1}
