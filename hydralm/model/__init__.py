"""The HYDRA model: a shared base encoder and a bank of per-user heads, plus head fitting.

`HydraModel` scores (query, item) pairs for many users with one base pass; `HeadBank` applies each
row's own head; `fit_heads_on_embeddings` fits thousands of heads on cached base vectors.

The names backed by transformers (`BaseEncoder`, `HydraModel`, `PairBatch`, `train_step`) load on
first use, so code that only moves heads (e.g. `hydralm.artifacts`) does not import transformers:
that halves its import time.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from hydralm.model.config import KIND_HEAD_DEFAULTS, HeadConfig, ModelConfig, default_encoder_path
from hydralm.model.fit import HeadFitConfig, fit_heads_on_embeddings, fit_heads_reencode
from hydralm.model.heads import (
    AnyHeadState,
    HeadBank,
    HeadState,
    LowRankHeadState,
    ResidualHeadState,
    check_head_config,
    head_state_class,
    segments,
    shared_digest,
    sort_by_head,
)

if TYPE_CHECKING:
    from hydralm.model.encoder import BaseEncoder
    from hydralm.model.hydra import HydraModel, PairBatch, train_step

__all__ = [
    "KIND_HEAD_DEFAULTS",
    "AnyHeadState",
    "BaseEncoder",
    "HeadBank",
    "HeadConfig",
    "HeadFitConfig",
    "HeadState",
    "HydraModel",
    "LowRankHeadState",
    "ModelConfig",
    "PairBatch",
    "ResidualHeadState",
    "check_head_config",
    "default_encoder_path",
    "fit_heads_on_embeddings",
    "fit_heads_reencode",
    "head_state_class",
    "segments",
    "shared_digest",
    "sort_by_head",
    "train_step",
]

_LAZY = {"BaseEncoder": "hydralm.model.encoder", "HydraModel": "hydralm.model.hydra",
         "PairBatch": "hydralm.model.hydra", "train_step": "hydralm.model.hydra"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
