"""Label files on disk or S3: which shards a label run consists of, their manifest, and reading
them back for the train and fit stages.

```
<work_dir>/labels/<model>/<stage>/shard-00003-<key>.parquet   one shard: a fixed group of users
<work_dir>/labels/<model>/<stage>/manifest.json               written last, when all shards exist
```
A shard's name carries a key over everything that decides its rows (task, label settings, the
generator's model, the adapter's retrieval and pair format, the shard's users), so a re-run with
the same settings finds its finished shards and skips them, and a run with other settings writes
new ones instead of mixing the two.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from hydralm.data.fs import join_uri
from hydralm.errors import NotFoundError
from hydralm.jobconfig import JobConfig
from hydralm.labels import LABEL_SCHEMA
from hydralm.pipeline.pairs import ADAPTER_PAIRS
from training.files import exists, read_json, read_parquet, write_json

__all__ = ["MANIFEST", "Shard", "pair_format", "plan_shards", "read_labels", "read_manifest",
           "write_manifest"]

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Shard:
    """A group of users labelled together and stored in one file."""

    name: str
    uri: str
    users: tuple[str, ...]


def _key(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


# Label settings added after shards were first written: left out of the key while they hold the
# value that reproduces the old rows, so shards written before they existed stay valid.
_ADDED_LATER = {"adapter_greedy_candidate": False, "adapter_best_candidate_positive": False,
                "adapter_bare_greedy_candidate": False, "adapter_bare_samples": 0}


def pair_format(model: str) -> dict:
    """{"pairs": format} for the adapter, whose pair texts have changed form (its shards hold
    them, so a new form must not reuse old shards); {} for the reranker."""
    return {"pairs": ADAPTER_PAIRS} if model == "adapter" else {}


def settings_key(cfg: JobConfig, model: str, stage: str, retrieval: str = "") -> dict:
    """Everything besides the users that decides a shard's rows."""
    labels = cfg.labels.model_dump(mode="json", exclude={"concurrent_shards"})
    for name, old_value in _ADDED_LATER.items():
        if labels.get(name) == old_value:
            del labels[name]
    return {"task": cfg.task, "model": model, "stage": stage, "labels": labels,
            "generator_model": cfg.generator.model, "retrieval": retrieval,
            **pair_format(model)}


def plan_shards(cfg: JobConfig, model: str, stage: str, users: Sequence[str], *,
                retrieval: str = "") -> list[Shard]:
    """Consecutive groups of `users_per_shard` users (in sorted order), named by their content."""
    ordered = sorted(users)
    size = cfg.labels.users_per_shard
    settings = settings_key(cfg, model, stage, retrieval)
    directory = cfg.paths.labels_dir(model, stage)
    shards = []
    for number, start in enumerate(range(0, len(ordered), size)):
        group = tuple(ordered[start:start + size])
        name = f"shard-{number:05d}-{_key({**settings, 'users': group})}.parquet"
        shards.append(Shard(name, join_uri(directory, name), group))
    return shards


def write_manifest(cfg: JobConfig, model: str, stage: str, shards: Sequence[Shard],
                   counts: dict[str, dict[str, int]]) -> dict:
    """Record the finished run: its shards in order, their row and positive counts, and (the
    adapter's) the pair format its rows hold, which training records in the bundle."""
    doc = {"model": model, "stage": stage, **pair_format(model),
           "shards": [{"name": s.name, "users": list(s.users), **counts[s.name]}
                      for s in shards],
           "users": sum(len(s.users) for s in shards),
           "rows": sum(counts[s.name]["rows"] for s in shards),
           "positives": sum(counts[s.name]["positives"] for s in shards)}
    write_json(join_uri(cfg.paths.labels_dir(model, stage), MANIFEST), doc)
    return doc


def read_manifest(cfg: JobConfig, model: str, stage: str) -> dict:
    uri = join_uri(cfg.paths.labels_dir(model, stage), MANIFEST)
    if not exists(uri):
        raise NotFoundError(f"no {model} {stage} labels in {cfg.paths.work_dir} ({uri} is "
                            f"missing): run `hydralm labels --config ... --model {model}` first")
    return read_json(uri)


def read_labels(cfg: JobConfig, model: str, stage: str,
                users: Sequence[str] | None = None) -> pa.Table:
    """All label rows of a finished label run (optionally only `users`), in shard order."""
    manifest = read_manifest(cfg, model, stage)
    directory = cfg.paths.labels_dir(model, stage)
    wanted = set(users) if users is not None else None
    tables = []
    for shard in manifest["shards"]:
        if wanted is not None and not wanted.intersection(shard["users"]):
            continue
        table = read_parquet(join_uri(directory, shard["name"]))
        if wanted is not None:
            mask = pc.is_in(table["user_id"], value_set=pa.array(sorted(wanted)))
            table = table.filter(mask)
        tables.append(table.select(LABEL_SCHEMA.names).cast(LABEL_SCHEMA))
    return pa.concat_tables(tables) if tables else LABEL_SCHEMA.empty_table()
