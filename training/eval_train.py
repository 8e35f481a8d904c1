"""One seed's HYDRA training for the quality benchmark, in the paper's order.

reranker labels (training users, and test users from their own history only) -> train the
reranker -> adapter labels (prompts reranked by the trained reranker) -> train the adapter ->
fit the test users' heads on the frozen bases. These are the job's own stages
(`training.stages`), each skipping what is already done (label shards, finished Ray Train runs,
fitted heads), so a re-run makes no generator call.

The guard's calibration (`guard.heads: fitted`) fits the training users' heads once more as a
new user's would be: labels from their own history, the fit stage on the same frozen bases, in a
calibration job of its own (`fit_calibration_heads`); with a head form to compare, once more in
that form (`fit_head_variant` on the calibration job), which chooses the form on training users.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from hydralm.artifacts import Registry
from hydralm.data.fs import join_uri
from hydralm.jobconfig import JobConfig
from training.bases import bundle_config, republish_with_head
from training.label_store import read_manifest
from training.routing import ensure_router
from training.stages import KINDS, STAGES, fit_stage, labels_stage, plan_label_runs, train_stage
from training.train_job import fit_training_heads, run_name
from training.users import UserSplit, pin_split, prepare_users

__all__ = ["fit_calibration_heads", "fit_head_variant", "train_seed"]

log = logging.getLogger(__name__)


def train_seed(job: JobConfig, *, base_url: str, progress: bool = True,
               hydra: bool = True) -> dict[str, Any]:
    """Prepare the seed's users and, when `hydra`, train both models and fit the test users'
    heads; returns a JSON-able summary with the generator calls the labels made."""
    start = time.monotonic()
    _, split = prepare_users(job)
    summary: dict[str, Any] = {"train_users": len(split.train), "test_users": len(split.test),
                               "generator_calls": 0}
    if not hydra:
        return summary
    labels, trained = [], {}
    for kind in KINDS:
        plans = plan_label_runs(job, [kind], STAGES)
        labels += labels_stage(job, plans, base_url=base_url, progress=progress)
        published = _published_run(job, kind)
        if published is not None:
            log.info("%s: the registry holds run %s of these labels; not retrained", kind,
                     published)
            trained[kind] = {"model": kind, "run": published, "skipped": True}
        else:
            trained[kind] = train_stage(job, [kind], progress=progress)["models"][0]
        # train_heads: dense: the training users' heads a crash left unfitted (before the
        # adapter's labels, which the training users' reranker heads order)
        fit_training_heads(job, split, [kind], progress=progress)
    # bases trained before zero-fit heads (or before their k was chosen) get a router
    ensure_router(job, split.train)
    fitted = fit_stage(job, KINDS, progress=progress)
    summary.update(generator_calls=sum(s["generator_calls"] for s in labels), labels=labels,
                   train=trained, fit=fitted, seconds=round(time.monotonic() - start, 1))
    log.info("trained %s: %d label runs, %d generator calls", job.paths.work_dir, len(labels),
             summary["generator_calls"])
    # Summaries may hold paths and numpy scalars: keep what JSON can say.
    return json.loads(json.dumps(summary, default=str))


def fit_head_variant(job: JobConfig, variant: JobConfig, *,
                     progress: bool = True) -> dict[str, Any]:
    """The heads `job` fits (its test users; in a guard calibration job, the training users)
    fitted again in the head form of `variant` (the same job with another head form and its own
    registry): `job`'s bases and global heads are published to the variant's registry with that
    form, then the fit stage fits the same users there from the same labels. Re-runs skip heads
    already fitted."""
    start = time.monotonic()
    version = republish_with_head(Registry(job.paths.registry), Registry(variant.paths.registry),
                                  variant.adapter.head)
    fitted = fit_stage(variant, KINDS, progress=progress)
    return json.loads(json.dumps({"registry": variant.paths.registry, "base_version": version,
                                  "head": variant.adapter.head.describe(), "fit": fitted,
                                  "seconds": round(time.monotonic() - start, 1)}, default=str))


def fit_calibration_heads(job: JobConfig, calibration: JobConfig, *, base_url: str,
                          progress: bool = True) -> dict[str, Any]:
    """`job`'s training users fitted as new users in `calibration` (a job with its own work dir
    and registry): `job`'s bases and global heads published there, their history labels made
    ("fit" stage: their queries and golds are never read) and their heads fitted on the frozen
    bases. Re-runs skip label shards and heads already made."""
    start = time.monotonic()
    _, split = prepare_users(job)
    pin_split(calibration, UserSplit(split.train, split.train, dataset=split.dataset))
    version = republish_with_head(Registry(job.paths.registry),
                                  Registry(calibration.paths.registry), None)
    labels = labels_stage(calibration, plan_label_runs(calibration, KINDS, ["fit"]),
                          base_url=base_url, progress=progress)
    fitted = fit_stage(calibration, KINDS, progress=progress)
    return json.loads(json.dumps({
        "registry": calibration.paths.registry, "base_version": version, "users": len(split.train),
        "generator_calls": sum(s["generator_calls"] for s in labels), "fit": fitted,
        "seconds": round(time.monotonic() - start, 1)}, default=str))


def _published_run(job: JobConfig, kind: str) -> str | None:
    """The run name of `kind` in the registry when it is the run these labels and settings make
    (then training again would only republish the same model under a new base version, which
    invalidates the test users' fitted heads); else None."""
    config = bundle_config(Registry(job.paths.registry))
    info = (((config or {}).get("kinds") or {}).get(kind) or {}).get("info") or {}
    if not info.get("run"):
        return None
    directory = job.paths.labels_dir(kind, "train")
    files = [join_uri(directory, s["name"]) for s in read_manifest(job, kind, "train")["shards"]]
    expected = run_name(job, kind, files)
    return expected if info["run"] == expected else None
