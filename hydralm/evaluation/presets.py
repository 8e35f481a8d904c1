"""Ready-made eval configs: the paper's protocol on synthetic users or LaMP files, and `--quick`.

Each preset is a plain mapping that `EvalConfig.from_dict` validates; command-line flags and YAML
files override it key by key.
"""

from __future__ import annotations

from typing import Any

from hydralm.data.schema import SYNTHETIC_TASKS

__all__ = ["PROTOCOL_USERS", "QUICK", "preset"]

# The paper's protocol: 100 training and 50 test users per seed, 3 seeds.
PROTOCOL_USERS = {"train": 100, "test": 50}

# A few minutes on a 2-core machine with the embedded SmolLM2: 8 training users, 6 test users of
# 2 queries each, one seed, one training epoch, small label sets.
QUICK: dict[str, Any] = {
    "users": {"train": 8, "test": 6},
    "seeds": [0],
    "max_queries_per_user": 2,
    "labels": {"k_retrieve": 6, "k_prompt": 4, "n_candidates": 8, "pseudo_queries_per_user": 3,
               "similar_per_pseudo": 3, "users_per_shard": 4},
    "reranker": {"max_length": 128},
    "adapter": {"max_length": 192},
    "train": {"epochs": 1, "batch_size": 32},
    "fit": {"epochs": 10, "num_buckets": 2},
    "bootstrap": {"resamples": 200},
}


def preset(task: str, *, lamp_dir: str | None = None, quick: bool = False) -> dict[str, Any]:
    """The default config of `hydralm eval`: synthetic users for a synthetic task (enough for
    the protocol's users), else the LaMP files in `lamp_dir`, training users drawn from the train
    split and test users from the dev split (LaMP's user-based splits hold disjoint users)."""
    if task in SYNTHETIC_TASKS:
        if lamp_dir is not None:
            raise ValueError(f"{task} users are generated: drop the LaMP directory "
                             f"(got {lamp_dir!r}) or pick a LaMP task")
        users = QUICK["users"] if quick else PROTOCOL_USERS
        per_user = {"queries_per_user": 2, "items_per_user": 12} if quick else {
            "queries_per_user": 4, "items_per_user": 20}
        data: dict[str, Any] = {"synth": {"users": users["train"] + users["test"], "seed": 0,
                                          **per_user}}
    elif lamp_dir is None:
        raise ValueError(f"{task} needs LaMP files: pass their directory (--lamp-dir)")
    else:
        data = {"lamp_dir": lamp_dir, "train_split": "train", "test_split": "dev"}
    config: dict[str, Any] = {"task": task, "data": data}
    if quick:
        config.update(QUICK)
    if quick and lamp_dir is not None:
        # Quick on LaMP files: every user of the (small) train and dev splits.
        config["users"] = {"train": None, "test": None}
    return config
