"""What the train loop trains on and with: label rows as tensors, and the HYDRA model with the
global head's loss computed from the same base pass.

`JointModel` wraps a `HydraModel` so that one forward (the unit DDP synchronises) returns the
users' heads' logits and, when there is a global head, that head's logits for the same rows: the
base runs once per batch for both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import torch
from torch import Tensor, nn

from hydralm.model import HydraModel, ModelConfig, PairBatch
from training.files import read_parquet

__all__ = ["JointModel", "LabelRows", "build_joint_model", "load_label_rows", "rows_from_table"]


@dataclass(frozen=True)
class LabelRows:
    """Training pairs: texts, each row's head (its user's index) and its 0/1 label."""

    firsts: list[str]
    seconds: list[str]
    head_idx: Tensor  # [N] long
    labels: Tensor    # [N] long

    def __len__(self) -> int:
        return len(self.firsts)

    def take(self, rows: Tensor) -> tuple[list[str], list[str], Tensor, Tensor]:
        ids = rows.tolist()
        return ([self.firsts[i] for i in ids], [self.seconds[i] for i in ids],
                self.head_idx[rows], self.labels[rows])


def rows_from_table(table: pa.Table, users: Sequence[str]) -> LabelRows:
    """Rows of `table` whose user is in `users` (head i is users[i]), in table order."""
    index = {user: i for i, user in enumerate(users)}
    table = table.filter(pc.is_in(table["user_id"], value_set=pa.array(list(users))))
    data = table.select(["user_id", "first", "second", "label"]).to_pydict()
    return LabelRows(data["first"], data["second"],
                     torch.tensor([index[u] for u in data["user_id"]], dtype=torch.long),
                     torch.tensor(data["label"], dtype=torch.long))


def load_label_rows(label_files: Sequence[str], users: Sequence[str]) -> LabelRows:
    """Read label shard files and keep the rows of `users`."""
    if not label_files:
        raise ValueError("no label files given: run `hydralm labels` first")
    table = pa.concat_tables([read_parquet(uri).select(["user_id", "first", "second", "label"])
                              for uri in label_files])
    rows = rows_from_table(table, users)
    if not len(rows):
        raise ValueError(f"the {len(label_files)} label files hold no rows of the "
                         f"{len(users)} training users")
    return rows


class JointModel(nn.Module):
    """forward(features, head_idx[B]) -> (users' logits [B, 2], global logits [B, 2] or None).

    The global head is the bank's last head (index `global_index`), trained on every row.
    """

    def __init__(self, hydra: HydraModel, global_index: int | None) -> None:
        super().__init__()
        self.hydra = hydra
        self.global_index = global_index

    @property
    def base(self) -> nn.Module:
        return self.hydra.base

    @property
    def heads(self) -> nn.Module:
        return self.hydra.heads

    def collate(self, firsts: list[str], seconds: list[str], head_idx: Tensor,
                labels: Tensor) -> PairBatch:
        return self.hydra.collate(firsts, seconds, head_idx, labels)

    def forward(self, features: dict[str, Tensor],
                head_idx: Tensor) -> tuple[Tensor, Tensor | None]:
        pooled = self.hydra.base(**features)                    # [B, d], one base pass
        users = self.hydra.heads(pooled, head_idx)              # [B, 2]
        if self.global_index is None:
            return users, None
        everyone = torch.full_like(head_idx, self.global_index)
        return users, self.hydra.heads(pooled, everyone)        # [B, 2]


def build_joint_model(config: ModelConfig, *, num_users: int, global_head: bool,
                      seed: int) -> JointModel:
    """The pretrained base with fresh heads: one per user, plus the global head (last)."""
    generator = torch.Generator().manual_seed(seed)
    num_heads = num_users + (1 if global_head else 0)
    hydra = HydraModel.from_config(config, num_heads, generator=generator)
    if global_head and config.head.form == "residual":
        # The global head of residual heads is the shared first layer itself: with a = b = 0
        # both get zero gradients, so AdamW keeps them 0 and it publishes as a dense head whose
        # w1 is the layer every user's head names.
        with torch.no_grad():
            hydra.heads.a[num_users].zero_()
    return JointModel(hydra, num_users if global_head else None)
