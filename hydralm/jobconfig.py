"""The one validated config of a training job (`hydralm labels|train|fit-users --config X`).

One YAML file describes the whole run: the task, where the users come from and which of them are
training users and which are new (test) users, the black-box generator, the two models, label
generation, the train stage (Ray Train), the fit stage (new users' heads) and where artifacts go.
Every field has a default, a description and bounds; cross-field rules fail with a message that
says what to change. Paths that are not set are derived from `work_dir` (see `JobPaths`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from hydralm.config import StrictModel
from hydralm.data.fs import join_uri
from hydralm.data.schema import SYNTHETIC_TASKS, TASK_NAMES, TaskName
from hydralm.generator.config import GeneratorConfig
from hydralm.labels.config import LabelsConfig
from hydralm.model.config import ModelConfig, with_kind_head_defaults
from hydralm.model.precision import Precision, precision_field
from hydralm.settings import home_dir

__all__ = [
    "DataConfig",
    "FitConfig",
    "JobConfig",
    "JobPaths",
    "RefitConfig",
    "SynthConfig",
    "TrainConfig",
    "UsersConfig",
    "load_job_config",
]


class SynthConfig(StrictModel):
    """Synthetic users made on the fly (`hydralm.data.synthesize`): one pool of users."""

    users: int = Field(12, ge=2, le=1_000_000, description="Users to generate.")
    queries_per_user: int = Field(4, ge=1, le=10_000, description="Queries (with golds) per user.")
    items_per_user: int = Field(20, ge=2, le=100_000, description="History items per user.")
    seed: int = Field(0, ge=0, description="Generation seed: same seed, same users.")


class DataConfig(StrictModel):
    """Where the users come from: exactly one of lamp_dir, questions, parquet, synth.

    With lamp_dir, training users come from `train_split` and new users from `test_split` (LaMP's
    user-based splits hold disjoint users). Every other source is one pool that `users` splits.
    """

    lamp_dir: str | None = Field(
        None, description="Directory with official LaMP file names (local or s3://).")
    train_split: Literal["train", "dev", "test"] = Field(
        "train", description="lamp_dir split of the training users (needs its outputs file).")
    test_split: Literal["train", "dev", "test"] | None = Field(
        "dev", description="lamp_dir split of the new users (their golds are never read); None "
                           "splits the train split's users instead.")
    questions: str | None = Field(None, description="A LaMP questions file (local or s3://).")
    outputs: str | None = Field(None, description="Its outputs file (golds), with questions.")
    parquet: str | None = Field(None, description="A hydralm Parquet dataset (hydralm data "
                                                  "convert), local or s3://.")
    synth: SynthConfig | None = Field(None, description="Generate synthetic users instead.")

    @model_validator(mode="after")
    def _one_source(self) -> DataConfig:
        given = [name for name in ("lamp_dir", "questions", "parquet", "synth")
                 if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"data needs exactly one of lamp_dir, questions, parquet, synth; "
                             f"got {given or 'none'}")
        if self.outputs is not None and self.questions is None:
            raise ValueError("data.outputs is the golds of data.questions: set questions too")
        if self.lamp_dir is not None and self.test_split == self.train_split:
            raise ValueError(f"data.test_split must differ from data.train_split (both "
                             f"{self.train_split!r}); set test_split: null to split one pool")
        return self

    @property
    def source(self) -> str:
        return next(n for n in ("lamp_dir", "questions", "parquet", "synth")
                    if getattr(self, n) is not None)

    @property
    def has_test_split(self) -> bool:
        """Whether new users come from their own split (else they are drawn from one pool)."""
        return self.lamp_dir is not None and self.test_split is not None


class UsersConfig(StrictModel):
    """Which users train the base and which are new users whose heads the fit stage makes."""

    num_train_users: int | None = Field(
        None, ge=1, le=10_000_000, description="Training users drawn (by seed); None: all.")
    num_test_users: int | None = Field(
        None, ge=0, le=10_000_000, description="New users drawn (by seed); None: all of the test "
                                               "split, or test_fraction of a single pool.")
    test_fraction: float = Field(
        0.25, gt=0.0, lt=1.0, description="Share of a single pool's users that are new users "
                                          "when num_test_users is None.")
    seed: int = Field(0, ge=0, description="Seed of the user draw: same seed, same split.")


class TrainConfig(StrictModel):
    """The train stage: base and all training users' heads jointly, on Ray Train."""

    epochs: int = Field(2, ge=1, le=1000, description="Passes over the training labels.")
    batch_size: int = Field(64, ge=1, le=65_536, description="Pairs per step, over all workers.")
    micro_batch_size: int | None = Field(
        None, ge=1, le=65_536, description="Pairs per forward/backward pass on a worker; a step "
                                           "accumulates its share in passes of this size, which "
                                           "bounds memory. None: the whole share at once.")
    lr: float = Field(2e-5, gt=0, le=1.0, description="AdamW learning rate of the base.")
    head_lr: float = Field(
        1e-3, gt=0, le=1.0, description="AdamW learning rate of the heads: a fresh d x d head "
                                        "barely moves at the base's 2e-5 in 2 epochs.")
    weight_decay: float = Field(0.01, ge=0, le=1.0, description="AdamW weight decay.")
    max_grad_norm: float | None = Field(1.0, gt=0, le=1e6,
                                        description="Gradient clipping; None: no clipping.")
    global_head: bool = Field(
        True, description="Also train a global head on every user's pairs (beyond the paper), "
                          "used for users with no head of their own.")
    zero_fit_users: int | Literal["auto"] = Field(
        "auto", description="Training users whose heads a zero-fit head mixes (beyond the paper: "
                            "a user with history and no fitted head is scored by the heads of the "
                            "training users with the most similar histories; "
                            "hydralm/model/zero_fit.py). auto: chosen per model kind after "
                            "training, each training user routed as if new over the others "
                            "(leave one out) on their own label pairs. The router is published "
                            "with the bases. 0: no zero-fit heads (the global head serves such "
                            "users).")

    @field_validator("zero_fit_users")
    @classmethod
    def _zero_fit_users(cls, value: int | str) -> int | str:
        if isinstance(value, int) and not 0 <= value <= 1024:
            raise ValueError(f"zero_fit_users must be auto or between 0 and 1024, got {value}")
        return value
    seed: int = Field(0, ge=0, description="Seed of initialisation and shuffling.")
    num_workers: int = Field(1, ge=1, le=4096, description="Ray Train workers (DDP ranks).")
    use_gpu: bool = Field(False, description="One GPU per worker, NCCL; else CPU and gloo.")
    cpus_per_worker: float = Field(1.0, gt=0, le=1024, description="CPUs each worker reserves.")
    torch_threads: int | None = Field(
        None, ge=1, le=1024, description="torch threads per worker; None: Ray's default, the "
                                         "worker's CPUs. More than the reserved CPUs when other "
                                         "reservations sit idle (e.g. the embedded generator "
                                         "after labelling).")
    storage_path: str | None = Field(
        None, description="Where checkpoints go: a local path or s3://bucket/prefix (endpoint "
                          "from HYDRALM_S3_ENDPOINT). None: <work_dir>/checkpoints.")
    run_name: str | None = Field(
        None, description="Ray Train run name; re-running a name resumes its latest checkpoint. "
                          "None: '<model>-<base fingerprint>'.")
    checkpoint_every_steps: int = Field(
        0, ge=0, le=10_000_000, description="Also checkpoint every this many steps; 0: only at "
                                            "the end of each epoch.")
    num_to_keep: int = Field(2, ge=1, le=1000, description="Checkpoints kept.")
    max_failures: int = Field(
        2, ge=-1, le=1000, description="Worker-group restarts from the latest checkpoint after "
                                       "a failure; -1: unlimited.")

    @field_validator("storage_path")
    @classmethod
    def _storage(cls, value: str | None) -> str | None:
        if value is not None and "://" in value and not value.startswith("s3://"):
            raise ValueError(f"storage_path must be a local path or s3://bucket/prefix, "
                             f"got {value!r}")
        return value

    @model_validator(mode="after")
    def _batch_covers_workers(self) -> TrainConfig:
        if self.batch_size < self.num_workers:
            raise ValueError(f"train.batch_size ({self.batch_size}) is split over the workers: "
                             f"it must be at least train.num_workers ({self.num_workers})")
        return self


class FitConfig(StrictModel):
    """The fit stage: fresh heads for new users on the frozen base, sharded across Ray."""

    epochs: int = Field(20, ge=1, le=10_000, description="Passes over one user's pairs.")
    batch_size: int = Field(16, ge=1, le=65_536,
                            description="Pairs per step of one user's head (its own mini-batch).")
    lr: float = Field(1e-3, gt=0, le=1.0, description="AdamW learning rate of a new head.")
    weight_decay: float = Field(0.01, ge=0, le=1.0, description="AdamW weight decay.")
    init: Literal["global", "random"] = Field(
        "global", description="A new head starts as a copy of the global head, or random.")
    num_buckets: int = Field(
        16, ge=1, le=100_000, description="Users are grouped by crc32(user) % num_buckets; one "
                                          "Ray task fits one bucket and saves its heads at once.")
    max_users_per_fit: int = Field(
        128, ge=1, le=100_000, description="Heads fitted together in one bank inside a bucket "
                                           "task (memory: about 3 * users * d * d floats).")
    embed_batch_size: int = Field(128, ge=1, le=65_536,
                                  description="Pairs per base forward when embedding.")
    embed_concurrency: int = Field(1, ge=1, le=4096,
                                   description="Most Ray Data tasks embedding at once.")
    precision: Precision = precision_field()
    cpus_per_task: float = Field(1.0, gt=0, le=1024,
                                 description="CPUs per bucket task and per embedding task.")
    seed: int = Field(0, ge=0, description="Seed of head initialisation and shuffling.")


class RefitConfig(StrictModel):
    """`hydralm fit-users --refit`: refit users' heads from what their history store now holds.

    A head records the history version it was fitted on; a refit run fits the users whose store
    version differs from it, and users with no head yet once they have `min_items` items."""

    history_backend: Literal["sqlite", "postgres"] = Field(
        "sqlite", description="The history store serving appends to: sqlite (history_path) or "
                              "postgres (connection settings from the environment or a mounted "
                              "Secret, as serving reads them; never from this file).")
    history_path: str | None = Field(
        None, description="The SQLite history file (sqlite backend). None: serving's default, "
                          "HYDRALM_HOME/serving/history.db.")
    min_items: int = Field(
        3, ge=2, le=100_000, description="History items a user without a head needs before a "
                                         "refit fits one (a pseudo-query needs another item).")
    max_users: int | None = Field(
        None, ge=1, le=100_000_000, description="Users refit per run and model (in user-id "
                                                "order); the rest wait for the next run. None: "
                                                "all.")
    page_size: int = Field(1000, ge=1, le=1_000_000,
                           description="Users read per page when listing history versions.")


Model = Literal["reranker", "adapter"]


class JobConfig(StrictModel):
    """A whole HYDRA training job: labels -> train -> fit-users."""

    task: TaskName = Field(..., description=f"Task name, one of {', '.join(TASK_NAMES)}.")
    data: DataConfig = Field(..., description="Where the users come from.")
    users: UsersConfig = Field(default_factory=UsersConfig,
                               description="Training users vs new users.")
    generator: GeneratorConfig = Field(
        default_factory=GeneratorConfig,
        description="The black box. Its cache defaults to <work_dir>/generator-cache: label "
                    "runs are resumable through it.")
    reranker: ModelConfig = Field(default_factory=ModelConfig,
                                  description="The reranker's base and heads (default head: "
                                              "dense, int8).")
    adapter: ModelConfig = Field(default_factory=ModelConfig,
                                 description="The adapter's base and heads (default head: "
                                             "residual r=16, int8).")
    labels: LabelsConfig = Field(default_factory=LabelsConfig, description="Label generation.")
    train: TrainConfig = Field(default_factory=TrainConfig, description="The train stage.")
    fit: FitConfig = Field(default_factory=FitConfig, description="The fit stage.")
    refit: RefitConfig = Field(default_factory=RefitConfig,
                               description="Refitting users from their history store.")
    registry: str | None = Field(None, description="Artifact registry (local or s3://). None: "
                                                   "<work_dir>/registry.")
    work_dir: str | None = Field(None, description="Label files, datasets, caches, checkpoints. "
                                                   "None: HYDRALM_HOME/work.")

    @model_validator(mode="before")
    @classmethod
    def _kind_head_defaults(cls, data: object) -> object:
        return with_kind_head_defaults(data)

    @model_validator(mode="after")
    def _cross_field(self) -> JobConfig:
        from hydralm.tasks import get_task  # the task registry is only needed here

        task = get_task(self.task)
        if self.data.synth is not None and self.task not in SYNTHETIC_TASKS:
            raise ValueError(f"data.synth makes {', '.join(SYNTHETIC_TASKS)} users, but task is "
                             f"{self.task!r}: set task to a synthetic task or use real data")
        if not task.supports_pseudo_queries and self.labels.pseudo_queries_per_user > 0:
            raise ValueError(f"{self.task} history items carry no label, so they cannot be "
                             "pseudo-queries: set labels.pseudo_queries_per_user: 0 (new users "
                             "then cannot be fitted)")
        if self.fit.init == "global" and not self.train.global_head:
            raise ValueError("fit.init 'global' copies the global head, but train.global_head is "
                             "false: set fit.init: random or train.global_head: true")
        residual = [k for k in ("reranker", "adapter") if self.model(k).head.form == "residual"]
        if residual and not self.train.global_head:
            default = " (the adapter's default)" if "adapter" in residual else ""
            raise ValueError(f"{' and '.join(residual)} head.form 'residual'{default} fits and "
                             "serves every user's head on the global head's w1, but "
                             "train.global_head is false: set train.global_head: true or another "
                             "head form (head: {form: dense})")
        if self.generator.cache is None:
            self.generator.cache = join_uri(self.paths.work_dir, "generator-cache")
        return self

    def model(self, name: Model) -> ModelConfig:
        if name not in ("reranker", "adapter"):
            raise ValueError(f"model must be 'reranker' or 'adapter', got {name!r}")
        return self.reranker if name == "reranker" else self.adapter

    @property
    def paths(self) -> JobPaths:
        work = _absolute(self.work_dir or str(home_dir() / "work"))
        return JobPaths(
            work_dir=work, registry=_absolute(self.registry or join_uri(work, "registry")),
            checkpoints=_absolute(self.train.storage_path or join_uri(work, "checkpoints")))


class JobPaths(StrictModel):
    """The locations a job reads and writes, all derived from the config."""

    work_dir: str = Field(..., description="Root of the job's files.")
    registry: str = Field(..., description="Artifact registry URI.")
    checkpoints: str = Field(..., description="Ray Train storage_path.")

    @property
    def dataset(self) -> str:
        """The job's users as one Parquet dataset (made from the configured source once)."""
        return join_uri(self.work_dir, "data", "users")

    @property
    def split_file(self) -> str:
        """Which users are training users and which are new users (JSON)."""
        return join_uri(self.work_dir, "data", "split.json")

    def labels_dir(self, model: Model, stage: str) -> str:
        """Label shards of one model and stage: <work_dir>/labels/<model>/<stage>/."""
        return join_uri(self.work_dir, "labels", model, stage)


def load_job_config(path: str | Path) -> JobConfig:
    """Read and validate a job YAML; ConfigError names the file and every bad field."""
    return JobConfig.from_yaml(path)


def _absolute(uri: str) -> str:
    """A local path made absolute (Ray workers may run elsewhere); s3:// URIs unchanged."""
    return uri if uri.startswith("s3://") else str(Path(uri).expanduser().absolute())
