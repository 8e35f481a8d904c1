"""The three stages of a training job as functions: what the CLI commands (and the quality
benchmark) call. Each needs Ray initialised; labels also need the generator's base URL when it
has work to do (`pending_label_shards` says whether it has, before a generator is started).

    labels_stage -> train_stage -> fit_stage

- labels: for each model and stage (train: training users; fit: new users, history only), the
  label shards not yet written;
- train: each model on the training users' labels (Ray Train), then one publish to the registry;
- fit: each model's heads for the new users whose heads are not yet on the current base.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from hydralm.jobconfig import JobConfig
from training.fit_job import run_fit
from training.labels_job import LabelPlan, plan_labels, run_labels
from training.train_job import run_train
from training.users import prepare_users

__all__ = ["KINDS", "STAGES", "fit_stage", "labels_stage", "pending_label_shards",
           "plan_label_runs", "train_stage"]

log = logging.getLogger(__name__)

KINDS = ("reranker", "adapter")
STAGES = ("train", "fit")


def plan_label_runs(cfg: JobConfig, models: Sequence[str] = KINDS,
                    stages: Sequence[str] = STAGES) -> list[LabelPlan]:
    """One plan per (model, stage), reranker first; prepares the job's users on first use."""
    _, split = prepare_users(cfg)
    return [plan_labels(cfg, split, model, stage) for model in models for stage in stages]


def pending_label_shards(plans: Sequence[LabelPlan]) -> int:
    return sum(len(p.pending) for p in plans)


def labels_stage(cfg: JobConfig, plans: Sequence[LabelPlan], *, base_url: str | None,
                 progress: bool = True) -> list[dict[str, Any]]:
    """Run the plans (see `plan_label_runs`) in one Ray Data pipeline; one summary per plan."""
    _, split = prepare_users(cfg)
    return run_labels(cfg, plans, dataset_uri=split.dataset, base_url=base_url,
                      progress=progress)


def train_stage(cfg: JobConfig, models: Sequence[str] = KINDS, *, progress: bool = True,
                crash_once: dict[str, Any] | None = None) -> dict[str, Any]:
    _, split = prepare_users(cfg)
    return run_train(cfg, split, list(models), crash_once=crash_once, progress=progress)


def fit_stage(cfg: JobConfig, models: Sequence[str] = KINDS, *, progress: bool = True,
              crash_bucket: int | None = None) -> dict[str, Any]:
    _, split = prepare_users(cfg)
    return run_fit(cfg, split, list(models), crash_bucket=crash_bucket, progress=progress)
