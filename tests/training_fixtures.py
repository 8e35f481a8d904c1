"""Helpers for the training tests (unit and integration): a tiny random encoder and a job whose
labels are written directly, so training, resuming and fitting run without the generator.

Import with `from training_fixtures import ...` (tests/ is on sys.path, as for fixtures_s3).
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import Any

import yaml

from hydralm.jobconfig import JobConfig
from hydralm.labels import LabelRecord, labels_to_table

__all__ = ["build_tiny_encoder", "tiny_job", "two_taste_labels", "write_fake_labels"]

_TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json",
                    "special_tokens_map.json")


def build_tiny_encoder(target: Path) -> Path:
    """A 1-layer BERT (d=32, no dropout: deterministic) with MiniLM's tokenizer: the real model
    code at a tiny cost."""
    import torch
    from transformers import BertConfig, BertModel

    from hydralm.model import default_encoder_path

    source = default_encoder_path()
    target.mkdir(parents=True, exist_ok=True)
    for name in _TOKENIZER_FILES:
        if (source / name).is_file():
            shutil.copy(source / name, target / name)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=128,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    BertModel(config).save_pretrained(target)
    return target


def tiny_job(work_dir: Path, encoder: Path, **sections: Any) -> JobConfig:
    """A synth-tag job of 8 users (6 training, 2 new) on the tiny encoder; `sections` override
    top-level keys (e.g. train={...}, registry="s3://...")."""
    model = {"encoder_path": str(encoder), "max_length": 32}
    doc: dict[str, Any] = {
        "task": "synth-tag",
        "data": {"synth": {"users": 8, "queries_per_user": 2, "items_per_user": 8}},
        "users": {"num_test_users": 2},
        "reranker": model, "adapter": model,
        "train": {"epochs": 1, "batch_size": 8, "num_workers": 1, "max_failures": 0},
        "fit": {"epochs": 3, "num_buckets": 2},
        "work_dir": str(work_dir),
    }
    for key, value in sections.items():
        doc[key] = {**doc[key], **value} if isinstance(value, dict) and key in doc else value
    path = work_dir.parent / f"{work_dir.name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return JobConfig.from_yaml(path)


def write_fake_labels(cfg: JobConfig, rows_per_user: int = 12, seed: int = 0,
                      rows_per_query: int = 1) -> None:
    """Label shards and manifests for every model and stage, as `hydralm labels` leaves them
    (pair texts from the users' own items; labels random but reproducible, the score equal to
    the label; `rows_per_query` rows share a query id)."""
    from training.files import write_parquet
    from training.label_store import plan_shards, write_manifest
    from training.users import prepare_users

    dataset, split = prepare_users(cfg)
    rng = random.Random(seed)
    for model in ("reranker", "adapter"):
        for stage in ("train", "fit"):
            shards = plan_shards(cfg, model, stage, split.users(stage), retrieval="fake")
            counts = {}
            for shard in shards:
                rows = []
                for user in shard.users:
                    profile = dataset.profile(user)
                    for i in range(rows_per_user):
                        item, label = profile[i % len(profile)], rng.randint(0, 1)
                        rows.append(LabelRecord(
                            model=model, stage=stage, user_id=user,
                            query_id=f"q{i // rows_per_query}", source="pseudo",
                            item_id=str(item["id"]), first=item["tag"],
                            second=item["description"], answer="", gold=item["tag"],
                            score=float(label), label=label))
                table = labels_to_table(rows)
                write_parquet(shard.uri, table)
                counts[shard.name] = {"rows": table.num_rows,
                                      "positives": sum(r.label for r in rows)}
            write_manifest(cfg, model, stage, shards, counts)


def two_taste_labels(tmp_path: Path) -> str:
    """A reranker label file of two users with different tastes (a likes apples, b pears):
    learnable only per user, so a train loop that learns must learn each user's head."""
    from training.files import write_parquet

    rng, rows = random.Random(0), []
    for user, liked in (("a", "apple"), ("b", "pear")):
        for i in range(16):
            fruit = ["apple", "pear", "plum", "fig"][i % 4]
            rows.append(LabelRecord(
                model="reranker", stage="train", user_id=user, query_id=f"q{i}", source="query",
                item_id=str(i), first="which fruit to buy",
                second=f"{fruit} {fruit} {rng.randint(1, 9)}", answer="", gold="", score=0.0,
                label=int(fruit == liked)))
    uri = str(tmp_path / "labels.parquet")
    write_parquet(uri, labels_to_table(rows))
    return uri
