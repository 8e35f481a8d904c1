"""The train stage on Ray Train: `TorchTrainer` runs `training.loop.train_loop` on every worker.

DDP over gloo on CPU or NCCL on GPU; checkpoints go through `ray.train.report` to the configured
storage (a local path or s3://). A worker failure restarts the worker group from the latest
checkpoint (`FailureConfig(max_failures)`), and re-running the same job resumes its run: the run
name is derived from the labels and settings, so the same inputs always name the same run. Once
every requested kind is trained, the bases, the training users' heads and the global heads are
published to the registry together (training/bases.py); a residual kind trained with dense heads
(`head.train_heads: dense`) publishes its base and global head, then has its training users'
heads fitted in the residual form on the frozen base (`fit_training_heads`).
"""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ray.train
import torch
from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchConfig, TorchTrainer

from hydralm.artifacts import Registry
from hydralm.data.fs import join_uri
from hydralm.jobconfig import JobConfig
from hydralm.model import ModelConfig
from training.bases import TrainedModel, publish_models
from training.fit_job import fit_kind
from training.label_store import read_manifest
from training.loop import CHECKPOINT_FILE, LoopSpec, train_loop
from training.model_build import build_joint_model
from training.progress import RemoteBar, driver_bar
from training.ray_env import storage_target, worker_env
from training.routing import build_router, ensure_router
from training.users import UserSplit

__all__ = ["RayTrainSession", "fit_training_heads", "run_name", "run_train", "train_kind"]

log = logging.getLogger(__name__)


class RayTrainSession:
    """`training.loop.Session` on a Ray Train worker; rank 0's progress goes to `board` (a
    `training.progress.ProgressBoard` the driver draws), if any."""

    def __init__(self, board: Any = None) -> None:
        self._board = board
        context = ray.train.get_context()
        self.rank = context.get_world_rank()
        self.world_size = context.get_world_size()
        self.device = ray.train.torch.get_device()

    def prepare(self, module: torch.nn.Module) -> torch.nn.Module:
        # The encoder's pooler is not used (pairs are mean- or CLS-pooled from the hidden
        # states), so DDP must expect parameters without gradients.
        return ray.train.torch.prepare_model(
            module, parallel_strategy_kwargs={"find_unused_parameters": True})

    def latest_checkpoint(self) -> Path | None:
        """The latest checkpoint in a directory of this rank's own. Ray's default download
        directory is shared by the ranks of a node, and a rank that takes its lock after
        another finished downloading downloads again, over the files the first one is reading
        (a resume then failed with "PytorchStreamReader failed reading file")."""
        checkpoint = ray.train.get_checkpoint()
        if checkpoint is None:
            return None
        local = tempfile.mkdtemp(prefix=f"hydralm-resume-rank{self.rank}-")
        atexit.register(shutil.rmtree, local, True)
        return Path(checkpoint.to_directory(local))

    def report(self, metrics: dict[str, Any], checkpoint_dir: Path | None) -> None:
        checkpoint = (ray.train.Checkpoint.from_directory(str(checkpoint_dir))
                      if checkpoint_dir is not None else None)
        ray.train.report(metrics, checkpoint=checkpoint)
        if checkpoint_dir is not None:
            shutil.rmtree(checkpoint_dir, ignore_errors=True)  # persisted by report

    def progress(self, total: int, desc: str) -> RemoteBar:
        return RemoteBar(self._board if self.rank == 0 else None, total, desc)


def _worker_loop(config: dict[str, Any]) -> dict[str, Any]:
    spec: LoopSpec = config["spec"]
    if spec.train.torch_threads:
        torch.set_num_threads(spec.train.torch_threads)
    return train_loop(spec, RayTrainSession(config.get("progress")))


def run_name(cfg: JobConfig, kind: str, label_files: list[str]) -> str:
    """The run's name: the same labels and training settings always give the same name, so a
    re-run resumes the old run instead of starting over."""
    if cfg.train.run_name:
        return f"{cfg.train.run_name}-{kind}"
    model = cfg.model(kind).model_dump(mode="json")
    if model["head"]["train_heads"] == "form":   # the default: names of earlier runs unchanged
        del model["head"]["train_heads"]
    payload = {"labels": label_files, "model": model,
               "train": cfg.train.model_dump(mode="json", include={
                   "epochs", "batch_size", "lr", "head_lr", "weight_decay", "max_grad_norm",
                   "global_head", "seed", "num_workers"})}
    key = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]
    return f"{kind}-{key}"


def _trained_from_checkpoint(path: Path, spec: LoopSpec, kind: str, name: str,
                             metrics: dict[str, Any], labels: dict[str, Any],
                             configured: ModelConfig | None = None) -> TrainedModel:
    """The trained model of a checkpoint; its `info` names the run and, for the adapter, the
    pair format of the label manifest it trained on (the bundle then records it).
    `configured`: the kind's model as the job configures it, when the loop trained another head
    (`spec.model` is its `for_training`): then the training users' heads are not taken from
    the checkpoint (`fit_training_heads` fits them in the configured form once published)."""
    configured = configured or spec.model
    state = torch.load(path / CHECKPOINT_FILE, map_location="cpu", weights_only=False)
    model = build_joint_model(spec.model, num_users=len(spec.users),
                              global_head=spec.train.global_head, seed=spec.train.seed)
    model.load_state_dict(state["model"])
    bank = model.hydra.heads
    trained = set(state.get("trained_users", state["users"]))   # others keep the global head
    kept = trained if configured.head == spec.model.head else set()  # else fitted once published
    heads = {user: bank.extract(i) for i, user in enumerate(state["users"]) if user in kept}
    index = model.global_index
    # A residual kind's global head is published dense float32: w1 = the shared first layer that
    # its users' heads name (and the layer new users' heads are fitted and served on).
    extract = bank.extract_dense if configured.head.form == "residual" else bank.extract
    global_head = extract(index) if index is not None else None
    info = {"run": name, "epochs": state["epoch"], "global_step": state["global_step"],
            "loss": metrics.get("loss"), "users": len(trained)}
    if "pairs" in labels:
        info["pairs"] = labels["pairs"]
    return TrainedModel(kind, model.hydra.base.state_dict(), configured, heads, global_head,
                        info)


def train_kind(cfg: JobConfig, split: UserSplit, kind: str, *,
               crash_once: dict[str, Any] | None = None,
               progress: Any = None) -> tuple[TrainedModel, dict[str, Any]]:
    """Train one kind with TorchTrainer; return the trained model and the run's summary.
    `progress`: a ProgressBoard for rank 0's steps (training/progress.py)."""
    manifest = read_manifest(cfg, kind, "train")
    directory = cfg.paths.labels_dir(kind, "train")
    label_files = [join_uri(directory, s["name"]) for s in manifest["shards"]]
    configured = cfg.model(kind)
    spec = LoopSpec(tuple(label_files), tuple(split.train), configured.for_training, cfg.train,
                    crash_once)
    storage_path, filesystem = storage_target(cfg.paths.checkpoints)
    name = run_name(cfg, kind, label_files)
    t = cfg.train
    trainer = TorchTrainer(
        _worker_loop, train_loop_config={"spec": spec, "progress": progress},
        torch_config=TorchConfig(backend="nccl" if t.use_gpu else "gloo"),
        scaling_config=ScalingConfig(num_workers=t.num_workers, use_gpu=t.use_gpu,
                                     resources_per_worker={"CPU": t.cpus_per_worker}),
        run_config=RunConfig(
            name=name, storage_path=storage_path, storage_filesystem=filesystem,
            failure_config=FailureConfig(max_failures=t.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=t.num_to_keep),
            worker_runtime_env=worker_env() or None))
    start = time.monotonic()
    log.info("training %s: run %s under %s (%d workers)", kind, name, cfg.paths.checkpoints,
             t.num_workers)
    result = trainer.fit()
    metrics = dict(result.metrics or {})
    with result.checkpoint.as_directory() as directory_path:
        trained = _trained_from_checkpoint(Path(directory_path), spec, kind, name, metrics,
                                           manifest, configured)
    summary = {"model": kind, "run": name, "users": len(split.train),
               "rows": metrics.get("rows"), "epochs": metrics.get("epoch"),
               "global_step": metrics.get("global_step"), "loss": metrics.get("loss"),
               "resumed_from": metrics.get("resumed_from"),
               "checkpoint": result.checkpoint.path,
               "seconds": round(time.monotonic() - start, 1)}
    return trained, summary


def run_train(cfg: JobConfig, split: UserSplit, kinds: list[str], *,
              crash_once: dict[str, Any] | None = None,
              progress: bool = True) -> dict[str, Any]:
    """Train `kinds` in order, then publish them together; returns the summaries."""
    trained, summaries = [], []
    for kind in kinds:
        with driver_bar(f"train {kind}", enabled=progress) as board:
            model, summary = train_kind(cfg, split, kind, crash_once=crash_once, progress=board)
        trained.append(model)
        summaries.append(summary)
    registry = Registry(cfg.paths.registry)
    # the zero-fit router over this split's training users (whose heads it mixes)
    version = publish_models(registry, trained, build_router(cfg, split.train))
    fitted = fit_training_heads(cfg, split, kinds, progress=progress)
    # zero_fit_users auto: each kind's k chosen on the training users, published again with it
    version = ensure_router(cfg, split.train) or version
    return {"base_version": version, "registry": cfg.paths.registry, "models": summaries,
            **({"training_heads_fitted": fitted} if fitted else {})}


def fit_training_heads(cfg: JobConfig, split: UserSplit, kinds: Sequence[str], *,
                       progress: bool = True) -> list[dict[str, Any]]:
    """For each kind of `kinds` whose head has `train_heads: dense`, fit the training users'
    heads in the configured form on the published (frozen) base from their training labels, as
    the fit stage fits a new user's (`fit_kind`: the base embeds the pairs once, one task per
    bucket; a residual head on the global head's w1); the summaries of the kinds that had users
    left. Users already holding a head on the current base are skipped, so a re-run after a
    crash finishes the rest. Until then the registry serves those users the global head, as it
    does a new user before their fit."""
    out = []
    for kind in kinds:
        if cfg.model(kind).head.train_heads != "dense":
            continue
        summary = fit_kind(cfg, kind, split.train, "train", progress=progress)
        if summary["fitted"] or summary["without_data"]:
            log.info("%s: %d training users' heads fitted in %s on base %s", kind,
                     summary["fitted"], cfg.model(kind).head.describe(), summary["base_version"])
            out.append(summary)
    return out
