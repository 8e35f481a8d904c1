"""The train stage's per-worker loop: a plain function, the same in one process and on Ray Train.

`train_loop(spec, session)` reads top to bottom: read the labels, build the model (shared base +
one head per training user + the global head), resume from the latest checkpoint if there is one,
then epochs of shuffled batches with 2-class cross-entropy and AdamW. Everything distributed sits
behind `session`: `LocalSession` runs it in this process (tests, a laptop), `RayTrainSession`
(training/train_job.py) wraps `ray.train` (DDP via prepare_model, report, get_checkpoint).

Data parallelism: every worker reads all rows and draws the same shuffled order per epoch (seeded
by epoch); a global batch of `batch_size` rows is split by rank (`rows[rank::world]`), so the steps
match across workers and DDP averages the gradients. Checkpoints record (epoch, step), and a resumed
run skips the batches before that step of that epoch: the result is that of a run that never
failed (up to dropout's random draws).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn
from tqdm import tqdm

from hydralm.jobconfig import TrainConfig
from hydralm.model import ModelConfig
from training.model_build import JointModel, LabelRows, build_joint_model, load_label_rows

__all__ = ["CHECKPOINT_FILE", "LocalSession", "LoopSpec", "Session", "global_batches",
           "train_loop"]

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "state.pt"


@dataclass(frozen=True)
class LoopSpec:
    """What a worker needs: label files, the users whose heads it trains (head i is users[i];
    the global head comes after them), and the settings. `crash_once` is a test hook:
    {"marker": path, "after_step": n} makes rank 0 die right after the first checkpoint at or
    past global step n, once (the marker file remembers)."""

    label_files: tuple[str, ...]
    users: tuple[str, ...]
    model: ModelConfig
    train: TrainConfig
    crash_once: dict[str, Any] | None = None


class Session(Protocol):
    """Where the loop runs: rank and world size, DDP wrapping, checkpoints, metrics, progress."""

    rank: int
    world_size: int
    device: torch.device

    def prepare(self, module: nn.Module) -> nn.Module: ...

    def latest_checkpoint(self) -> Path | None: ...

    def report(self, metrics: dict[str, Any], checkpoint_dir: Path | None) -> None: ...

    def progress(self, total: int, desc: str) -> Any: ...


@dataclass
class LocalSession:
    """One process, no Ray: checkpoints are directories under `root` (checkpoint_000001, ...)."""

    root: Path
    show_progress: bool = False
    rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    reported: list[dict[str, Any]] = field(default_factory=list)

    def prepare(self, module: nn.Module) -> nn.Module:
        return module.to(self.device)

    def latest_checkpoint(self) -> Path | None:
        found = sorted(self.root.glob("checkpoint_*"))
        return found[-1] if found else None

    def report(self, metrics: dict[str, Any], checkpoint_dir: Path | None) -> None:
        self.reported.append(dict(metrics))
        if checkpoint_dir is not None:
            self.root.mkdir(parents=True, exist_ok=True)
            count = len(list(self.root.glob("checkpoint_*")))
            shutil.move(checkpoint_dir, self.root / f"checkpoint_{count + 1:06d}")

    def progress(self, total: int, desc: str) -> Any:
        return tqdm(total=total, desc=desc, disable=not self.show_progress)


@dataclass
class _Position:
    """Where training stands: the next (epoch, step) to run and the steps done in all."""

    epoch: int = 0
    step: int = 0
    global_step: int = 0


def global_batches(n: int, batch_size: int, *, seed: int, epoch: int) -> list[torch.Tensor]:
    """This epoch's batches of row indices, identical on every worker. The last batch is filled
    up from the start of the order, so every batch has min(batch_size, n) rows."""
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(n, generator=generator)
    size = min(batch_size, n)
    batches = [order[i:i + size] for i in range(0, n, size)]
    if len(batches[-1]) < size:
        batches[-1] = torch.cat([batches[-1], order[:size - len(batches[-1])]])
    return batches


def _optimizer(model: JointModel, cfg: TrainConfig) -> torch.optim.Optimizer:
    # The heads learn at head_lr: fresh d x d heads barely move at the base's 2e-5 in 2 epochs.
    return torch.optim.AdamW([
        {"params": model.base.parameters(), "lr": cfg.lr},
        {"params": model.heads.parameters(), "lr": cfg.head_lr},
    ], weight_decay=cfg.weight_decay)


def _resume(session: Session, model: JointModel,
            optimizer: torch.optim.Optimizer) -> tuple[_Position, dict[str, Any]]:
    """Where the latest checkpoint stands and the metrics it was reported with."""
    path = session.latest_checkpoint()
    if path is None:
        return _Position(), {}
    state = torch.load(path / CHECKPOINT_FILE, map_location="cpu", weights_only=False)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    log.info("resuming from %s at epoch %d step %d", path, state["epoch"], state["step"])
    return _Position(state["epoch"], state["step"], state["global_step"]), state.get("metrics", {})


def _checkpoint(session: Session, model: JointModel, optimizer: torch.optim.Optimizer,
                at: _Position, users: tuple[str, ...], trained: list[str],
                metrics: dict[str, Any]) -> None:
    """Report metrics; rank 0 also writes the checkpoint (every rank must call report).
    `trained`: the users with label rows, whose heads were trained (the others' are not)."""
    checkpoint_dir = None
    if session.rank == 0:
        checkpoint_dir = Path(tempfile.mkdtemp(prefix="hydralm-ckpt-"))
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "users": list(users), "trained_users": trained, "epoch": at.epoch,
                    "step": at.step, "global_step": at.global_step, "metrics": metrics},
                   checkpoint_dir / CHECKPOINT_FILE)
    session.report(metrics, checkpoint_dir)


def _maybe_crash(spec: LoopSpec, session: Session, global_step: int) -> None:
    hook = spec.crash_once
    if not hook or session.rank != 0 or global_step < hook["after_step"]:
        return
    marker = Path(hook["marker"])
    if marker.exists():
        return
    marker.write_text(f"crashed after global step {global_step}\n")
    log.warning("crash_once: killing this worker after global step %d", global_step)
    os._exit(1)


def _step(wrapped: nn.Module, model: JointModel, rows: LabelRows, mine: torch.Tensor,
          optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> float:
    """One optimizer step on this worker's share of a global batch; returns its loss. The share
    goes through the model in micro-batches (gradients accumulate), which bounds memory."""
    wrapped.train()
    optimizer.zero_grad(set_to_none=True)
    chunks = torch.split(mine, cfg.micro_batch_size or len(mine))
    total = 0.0
    for i, chunk in enumerate(chunks):
        last = i + 1 == len(chunks)
        # DDP all-reduces the gradients once, after the last micro-batch.
        sync = contextlib.nullcontext() if last else getattr(wrapped, "no_sync",
                                                              contextlib.nullcontext)()
        with sync:
            batch = model.collate(*rows.take(chunk))
            user_logits, global_logits = wrapped(batch.features, batch.head_idx)  # [b, 2] each
            loss = nn.functional.cross_entropy(user_logits, batch.labels)
            if global_logits is not None:
                loss = loss + nn.functional.cross_entropy(global_logits, batch.labels)
            loss = loss * (len(chunk) / len(mine))   # the share's mean over all its rows
            loss.backward()
        total += float(loss.detach())
    if cfg.max_grad_norm is not None:
        nn.utils.clip_grad_norm_(wrapped.parameters(), cfg.max_grad_norm)
    optimizer.step()
    return total


def train_loop(spec: LoopSpec, session: Session) -> dict[str, Any]:
    """Train base + heads on the spec's labels; return the last reported metrics."""
    cfg = spec.train
    torch.manual_seed(cfg.seed + session.rank)
    rows = load_label_rows(spec.label_files, spec.users)
    trained = [spec.users[i] for i in sorted(set(rows.head_idx.tolist()))]
    if len(rows) < session.world_size:
        raise ValueError(f"{len(rows)} labelled pairs cannot be split over "
                         f"{session.world_size} workers")
    model = build_joint_model(spec.model, num_users=len(spec.users),
                              global_head=cfg.global_head, seed=cfg.seed)
    wrapped = session.prepare(model)   # on the device (and DDP) before the optimizer's state
    optimizer = _optimizer(model, cfg)
    at, saved = _resume(session, model, optimizer)
    resumed_from = at.global_step if at.global_step else -1
    metrics: dict[str, Any] = {"epoch": at.epoch, "step": at.step, "global_step": at.global_step,
                               "loss": saved.get("loss"), "rows": len(rows),
                               "resumed_from": resumed_from}
    if at.epoch >= cfg.epochs:  # a finished run re-run: report its final state once more
        _checkpoint(session, model, optimizer, at, spec.users, trained, metrics)
        return metrics
    for epoch in range(at.epoch, cfg.epochs):
        batches = global_batches(len(rows), cfg.batch_size, seed=cfg.seed, epoch=epoch)
        first, losses, began = (at.step if epoch == at.epoch else 0), [], time.monotonic()
        with session.progress(len(batches), f"epoch {epoch + 1}/{cfg.epochs}") as bar:
            bar.update(first)
            for step in range(first, len(batches)):
                mine = batches[step][session.rank::session.world_size]
                losses.append(_step(wrapped, model, rows, mine, optimizer, cfg))
                bar.update(1)
                last = step + 1 == len(batches)
                at = _Position(epoch + 1 if last else epoch, 0 if last else step + 1,
                               at.global_step + 1)
                every = cfg.checkpoint_every_steps
                if last or (every and at.global_step % every == 0):
                    metrics = {**metrics, "epoch": at.epoch, "step": step + 1,
                               "global_step": at.global_step,
                               "loss": sum(losses) / len(losses),
                               "seconds": round(time.monotonic() - began, 2)}
                    _checkpoint(session, model, optimizer, at, spec.users, trained, metrics)
                    _maybe_crash(spec, session, at.global_step)
        log.info("epoch %d/%d: mean loss %.4f over %d steps", epoch + 1, cfg.epochs,
                 sum(losses) / max(len(losses), 1), len(losses))
    return metrics
