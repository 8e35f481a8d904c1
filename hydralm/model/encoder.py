"""The shared base: a Hugging Face encoder that turns a (query, item) pair into one vector."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn
from transformers import AutoConfig, AutoModel, AutoTokenizer
from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

from hydralm.errors import ArtifactError, ConfigError
from hydralm.model.config import ModelConfig, default_encoder_path
from hydralm.model.precision import (
    Precision,
    ResolvedPrecision,
    precision_dtype,
    resolve_precision,
)
from hydralm.settings import env_int

__all__ = ["BaseEncoder"]

log = logging.getLogger(__name__)


def _check_encoder_dir(path: Path) -> None:
    """ConfigError when the path is absent; ArtifactError when it holds no encoder."""
    if not path.is_dir():
        raise ConfigError(f"encoder path: no such directory, got {str(path)!r}")
    if not (path / "config.json").is_file():
        raise ArtifactError(f"encoder path {str(path)!r} is not a Hugging Face model directory "
                            "(no config.json)")
    try:
        config = AutoConfig.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"encoder path {str(path)!r}: config.json does not load: {exc}") from exc
    # Encoders (BERT, RoBERTa, MiniLM, DeBERTa, ModernBERT...) are exactly the masked-LM families;
    # decoder-only and encoder-decoder models would silently pool the wrong states.
    if config.is_encoder_decoder or config.model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES:
        raise ArtifactError(f"encoder path {str(path)!r} holds a {config.model_type!r} model, "
                            "not a BERT-like encoder")


class BaseEncoder(nn.Module):
    """A pair encoder: tokenize("query [SEP] item") -> transformer -> pooled [B, d]."""

    def __init__(self, path: str | Path | None = None, *, pooling: Literal["cls", "mean"] = "mean",
                 max_length: int = 256) -> None:
        super().__init__()
        if pooling not in ("cls", "mean"):
            raise ConfigError(f"pooling must be 'cls' or 'mean', got {pooling!r}")
        self.path = Path(path).expanduser() if path is not None else default_encoder_path()
        _check_encoder_dir(self.path)
        threads = env_int("HYDRALM_NUM_THREADS")
        if threads > 0:
            torch.set_num_threads(threads)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
            self.model = AutoModel.from_pretrained(self.path, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise ArtifactError(f"encoder at {str(self.path)!r} does not load: {exc}") from exc
        self.pooling = pooling
        self.max_length = min(max_length, self.tokenizer.model_max_length)
        log.info("loaded encoder %s (d=%d, pooling=%s, max_length=%d)", self.path, self.dim,
                 pooling, self.max_length)

    @classmethod
    def from_config(cls, config: ModelConfig) -> BaseEncoder:
        return cls(config.resolve_encoder_path(), pooling=config.pooling,
                   max_length=config.max_length)

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def precision(self) -> ResolvedPrecision:
        """'bf16' once `set_precision` cast the weights, else 'fp32'."""
        return "bf16" if next(self.model.parameters()).dtype == torch.bfloat16 else "fp32"

    def set_precision(self, precision: Precision) -> ResolvedPrecision:
        """Run the transformer in `precision` ('auto': bf16 where this device has native bf16,
        see hydralm.model.precision); returns the one chosen. For a frozen encoder (inference):
        the weights are cast, and fp32 after bf16 is refused (it would not bring the fp32 weights
        back: load the encoder again). Pooled vectors stay fp32 either way."""
        resolved = resolve_precision(precision, self.device)
        if resolved == "fp32" and self.precision == "bf16":
            raise ValueError(f"encoder {str(self.path)!r} already runs in bf16: casting back to "
                             "fp32 would not restore its fp32 weights; load it again")
        self.model.to(precision_dtype(resolved))
        log.info("encoder %s runs in %s on %s", self.path, resolved, self.device)
        return resolved

    def tokenize(self, firsts: Sequence[str], seconds: Sequence[str]) -> dict[str, Tensor]:
        """Pair encoding ([CLS] first [SEP] second [SEP]), padded to the longest pair."""
        if len(firsts) != len(seconds):
            raise ValueError(f"firsts and seconds must have the same length, "
                             f"got {len(firsts)} and {len(seconds)}")
        batch = self.tokenizer(list(firsts), list(seconds), padding=True, truncation="longest_first",
                               max_length=self.max_length, return_tensors="pt")
        return {k: v.to(self.device) for k, v in batch.items()}

    def forward(self, **batch: Tensor) -> Tensor:
        """Tokenized batch -> pooled [B, d], fp32 whatever the encoder's precision."""
        states = self.model(**batch).last_hidden_state.float()       # [B, T, d]
        if self.pooling == "cls":
            return states[:, 0]                                       # [B, d]
        mask = batch["attention_mask"].unsqueeze(-1).to(states.dtype)  # [B, T, 1]
        return (states * mask).sum(1) / mask.sum(1).clamp(min=1.0)    # [B, d]

    def embed(self, firsts: Sequence[str], seconds: Sequence[str], batch_size: int = 64) -> Tensor:
        """Pooled vectors [B, d] for inference (eval mode, no gradients), in the input order.

        Pairs are batched by length so short pairs are not padded to the longest one.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if len(firsts) != len(seconds):
            raise ValueError(f"firsts and seconds must have the same length, "
                             f"got {len(firsts)} and {len(seconds)}")
        if not firsts:
            return torch.zeros(0, self.dim, device=self.device)
        order = sorted(range(len(firsts)), key=lambda i: len(firsts[i]) + len(seconds[i]))
        out = torch.empty(len(firsts), self.dim, device=self.device)
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                for start in range(0, len(order), batch_size):
                    rows = order[start:start + batch_size]
                    batch = self.tokenize([firsts[i] for i in rows], [seconds[i] for i in rows])
                    out[torch.tensor(rows, device=self.device)] = self(**batch)
        finally:
            self.train(was_training)
        return out
