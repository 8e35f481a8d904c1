"""HYDRA's model: one shared base encoder, one head per user, many users per forward pass."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hydralm.model.config import ModelConfig
from hydralm.model.encoder import BaseEncoder
from hydralm.model.heads import HeadBank

__all__ = ["HydraModel", "PairBatch", "train_step"]


@dataclass(frozen=True)
class PairBatch:
    """One training batch: tokenized pairs, each row's head and its 0/1 label."""

    features: dict[str, Tensor]  # tokenizer output, each [B, T]
    head_idx: Tensor             # [B] long
    labels: Tensor               # [B] long in {0, 1}


def as_index(values: Sequence[int] | Tensor, name: str, device: torch.device) -> Tensor:
    """A 1-D long tensor on `device` (user-facing lists become tensors once, here)."""
    tensor = torch.as_tensor(values, dtype=torch.long, device=device)
    if tensor.dim() != 1:
        raise ValueError(f"{name} must be 1-D, got shape {tuple(tensor.shape)}")
    return tensor


class HydraModel(nn.Module):
    """Base encoder + head bank: forward(batch, head_idx[B]) -> logits [B, 2]."""

    def __init__(self, base: BaseEncoder, heads: HeadBank) -> None:
        super().__init__()
        if base.dim != heads.dim:
            raise ValueError(f"head width must equal the encoder's dimension: encoder d={base.dim}, "
                             f"heads d={heads.dim}")
        self.base = base
        self.heads = heads

    @classmethod
    def from_config(cls, config: ModelConfig, num_heads: int,
                    generator: torch.Generator | None = None) -> HydraModel:
        base = BaseEncoder.from_config(config)
        # residual heads: a fresh shared first layer, trained with the base and the heads
        shared = (HeadBank.fresh_shared(base.dim, generator)
                  if config.head.form == "residual" else None)
        return cls(base, HeadBank(num_heads, base.dim, dropout=config.dropout, head=config.head,
                                  generator=generator, shared=shared))

    def forward(self, batch: Mapping[str, Tensor], head_idx: Tensor) -> Tensor:
        pooled = self.base(**batch)            # [B, d]: one base pass for every user in the batch
        return self.heads(pooled, head_idx)    # [B, 2]: each row through its own user's head

    def collate(self, firsts: Sequence[str], seconds: Sequence[str],
                head_idx: Sequence[int] | Tensor, labels: Sequence[int] | Tensor) -> PairBatch:
        device = self.base.device
        batch = PairBatch(self.base.tokenize(firsts, seconds),
                          as_index(head_idx, "head_idx", device), as_index(labels, "labels", device))
        if not batch.head_idx.shape == batch.labels.shape == (len(firsts),):
            raise ValueError(f"need one head and one label per pair: {len(firsts)} pairs, "
                             f"{batch.head_idx.numel()} heads, {batch.labels.numel()} labels")
        return batch

    def score(self, firsts: Sequence[str], seconds: Sequence[str],
              head_idx: Sequence[int] | Tensor) -> Tensor:
        """P(label 1) [B] for each pair under its row's head: one base pass for the whole batch."""
        idx = as_index(head_idx, "head_idx", self.base.device)
        if idx.numel() != len(firsts):
            raise ValueError(f"need one head per pair, got {len(firsts)} pairs and "
                             f"{idx.numel()} heads")
        if not firsts:
            return torch.zeros(0)
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                logits = self(self.base.tokenize(firsts, seconds), idx)   # [B, 2]
        finally:
            self.train(was_training)
        return torch.softmax(logits, dim=-1)[:, 1]                         # [B]


def train_step(model: nn.Module, batch: PairBatch, optimizer: torch.optim.Optimizer) -> float:
    """One optimizer step of 2-class cross-entropy; returns the batch loss.

    `model` is a HydraModel or the same model wrapped by Ray Train's `prepare_model` (DDP).
    """
    model.train()
    optimizer.zero_grad(set_to_none=True)
    logits = model(batch.features, batch.head_idx)     # [B, 2]
    loss = F.cross_entropy(logits, batch.labels)
    loss.backward()
    optimizer.step()
    return float(loss.detach())
