"""Fitting new users' heads on cached base embeddings: the work of one bucket task, without Ray.

Users are fitted in banks of at most `max_users_per_fit` heads (each bank trains its users at once
with `hydralm.model.fit_heads_on_embeddings`, every head as if alone), so memory stays bounded
however many users a bucket holds.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from hydralm.jobconfig import FitConfig
from hydralm.model import AnyHeadState, HeadConfig, HeadFitConfig, fit_heads_on_embeddings

__all__ = ["embeddings_table", "fit_user_heads", "head_fit_config"]


def head_fit_config(fit: FitConfig, dropout: float) -> HeadFitConfig:
    return HeadFitConfig(epochs=fit.epochs, lr=fit.lr, batch_size=fit.batch_size,
                         weight_decay=fit.weight_decay, dropout=dropout, seed=fit.seed)


def embeddings_table(user_ids: Sequence[str], labels: Sequence[int],
                     vectors: np.ndarray) -> pa.Table:
    """Rows of (user_id, label, embedding as a fixed-size float32 list)."""
    flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1))
    return pa.table({"user_id": pa.array(list(user_ids), pa.string()),
                     "label": pa.array(list(labels), pa.int8()),
                     "embedding": pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1])})


def _vectors(table: pa.Table) -> torch.Tensor:
    column = table["embedding"].combine_chunks()
    dim = column.type.list_size
    flat = column.flatten().to_numpy(zero_copy_only=False)
    return torch.from_numpy(np.array(flat, dtype=np.float32).reshape(-1, dim))  # a copy


def fit_user_heads(table: pa.Table, users: Sequence[str], config: HeadFitConfig, *,
                   max_users_per_fit: int, init: AnyHeadState | None,
                   head: HeadConfig | None = None,
                   shared: torch.Tensor | None = None) -> dict[str, AnyHeadState]:
    """A fitted head for each of `users` that has rows in `table` (user_id, label, embedding),
    of form `head` (default: `init`'s form, else dense). Residual heads are fitted on `shared`,
    the frozen first layer of the base version's global head (its w1), and name it."""
    data_users = set(table["user_id"].to_pylist())
    wanted = [u for u in users if u in data_users]
    heads: dict[str, AnyHeadState] = {}
    for start in range(0, len(wanted), max_users_per_fit):
        group = wanted[start:start + max_users_per_fit]
        index = {user: i for i, user in enumerate(group)}
        rows = table.filter(pc.is_in(table["user_id"], value_set=pa.array(group)))
        head_idx = torch.tensor([index[u] for u in rows["user_id"].to_pylist()])
        labels = torch.tensor(rows["label"].to_pylist(), dtype=torch.long)
        bank = fit_heads_on_embeddings(_vectors(rows), head_idx, labels, len(group), config,
                                       init=init, head=head, shared=shared)
        heads.update({user: bank.extract(i) for user, i in index.items()})
    return heads
