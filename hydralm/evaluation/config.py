"""The quality benchmark's one validated config: protocol, data, generator and training settings.

One seed of the protocol is one HYDRA training job (`JobConfig`): its users are drawn by that
seed, its training users train the bases and their heads (labels -> train), its test users get
heads fitted on their own history only (fit-users), and their held-out queries are what every
method is scored on. `EvalConfig.job(seed)` builds that job; the retrieval and sampling settings
of label generation (`labels.k_retrieve`, `k_prompt`, `n_candidates`) are also the pipeline's at
test time, so the models are evaluated as they were trained.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from hydralm.config import StrictModel
from hydralm.data.fs import join_uri
from hydralm.data.schema import TASK_NAMES, TaskName
from hydralm.evaluation.runner import LLM_METHODS, needs_scorer
from hydralm.evaluation.variants import head_tag
from hydralm.generator.config import GeneratorConfig
from hydralm.jobconfig import DataConfig, FitConfig, JobConfig, TrainConfig, UsersConfig
from hydralm.labels.config import LabelsConfig
from hydralm.model.config import HeadConfig, ModelConfig, with_kind_head_defaults
from hydralm.model.precision import Precision, precision_field
from hydralm.settings import home_dir

__all__ = ["BootstrapConfig", "EvalConfig", "EvalUsers", "GuardConfig", "load_eval_config"]


class EvalUsers(StrictModel):
    """How many users each seed draws (the paper: 100 training, 50 test)."""

    train: int | None = Field(100, ge=1, le=10_000_000,
                              description="Training users per seed; None: every one available.")
    test: int | None = Field(50, ge=1, le=10_000_000,
                             description="Test users per seed; None: the whole test split (or "
                                         "a quarter of a single pool).")


class BootstrapConfig(StrictModel):
    """The confidence intervals: percentile bootstrap over each seed's test queries."""

    resamples: int = Field(1000, ge=10, le=1_000_000, description="Bootstrap replicates.")
    confidence: float = Field(0.95, gt=0.5, lt=1.0, description="Interval coverage.")
    seed: int = Field(0, ge=0, description="Seed of the resample draw: same seed, same CIs.")


class GuardConfig(StrictModel):
    """The guard against a collapsed adapter selection (hydralm/pipeline/selection.py)."""

    min_spread: float | None = Field(
        None, ge=0.0, le=1.0,
        description="Adapter-score spread below which a pick counts as collapsed. None: chosen "
                    "per seed on the training users' held-out queries (those beyond "
                    "labels.max_queries_per_user), never on test users: no guard or always "
                    "falling back, whichever scores better, unless a threshold between beats it "
                    "by two standard errors; zero-fit picks get their own choice; 0: off.")
    rule: Literal["consensus", "first", "history", "auto"] = Field(
        "consensus", description="What picks instead: the candidate the others agree with "
                                 "most (consensus), the first candidate (first: the greedy "
                                 "answer; the bare query's with "
                                 "labels.adapter_bare_greedy_candidate), or the candidate "
                                 "agreeing most with the user's own answers of the history "
                                 "items most like the query (history); auto: whichever of the "
                                 "three scores best on the training users' held-out queries, "
                                 "with min_spread chosen there too.")
    heads: Literal["fitted", "trained"] = Field(
        "fitted", description="The training users' heads the threshold is chosen with. fitted: "
                              "heads fitted again by the fit stage from each training user's "
                              "own history, in a calibration job of the seed (the procedure the "
                              "test users' heads come from, so their scores spread as the test "
                              "users' do; costs the history labels of the training users and "
                              "their fit); trained: the heads trained jointly with the bases "
                              "(cheaper; their scores spread narrower).")

    @property
    def calibrated(self) -> bool:
        """Whether the threshold is chosen on training users (not set in the config)."""
        return self.min_spread is None

    @model_validator(mode="after")
    def _auto_is_chosen(self) -> GuardConfig:
        if self.rule == "auto" and self.min_spread is not None:
            raise ValueError("guard.rule auto is chosen with the threshold on training users' "
                             "held-out queries: leave guard.min_spread unset (null)")
        return self


class EvalConfig(StrictModel):
    """`hydralm eval`: the paper's comparison on one task, one data source and one generator."""

    task: TaskName = Field(..., description=f"Task name, one of {', '.join(TASK_NAMES)}.")
    data: DataConfig = Field(..., description="Where the users come from (as a training job).")
    dataset: str | None = Field(
        None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$",
        description="Name in result file names (quality_<dataset>_<task>.json); None: 'synth' "
                    "for synthetic users, else the data directory's or file's name.")
    users: EvalUsers = Field(default_factory=EvalUsers, description="Users drawn per seed.")
    seeds: list[int] = Field([0, 1, 2], min_length=1, max_length=100,
                             description="One user draw and training run per seed; results are "
                                         "averaged over them.")
    max_queries_per_user: int | None = Field(
        None, ge=1, le=100_000, description="Test queries scored per test user (first ones); "
                                            "None: all of them.")
    methods: list[str] = Field(list(LLM_METHODS), min_length=1,
                               description=f"Methods compared, of {', '.join(LLM_METHODS)}.")
    concurrency: int = Field(16, ge=1, le=4096, description="Test queries in flight at once.")
    bootstrap: BootstrapConfig = Field(default_factory=BootstrapConfig,
                                       description="Confidence intervals.")
    guard: GuardConfig = Field(default_factory=GuardConfig,
                               description="The guard against a collapsed adapter selection.")
    generator: GeneratorConfig = Field(
        default_factory=GeneratorConfig,
        description="The black box. Its cache defaults to <work_dir>/generator-cache, shared by "
                    "every seed's labels and evaluation: a re-run makes no generator call.")
    labels: LabelsConfig = Field(default_factory=LabelsConfig,
                                 description="Label generation; also the test-time k_retrieve, "
                                             "k_prompt (= history_knn's k) and n_candidates.")
    reranker: ModelConfig = Field(default_factory=ModelConfig,
                                  description="The reranker (default head: dense, int8).")
    adapter: ModelConfig = Field(default_factory=ModelConfig,
                                 description="The adapter (default head: residual r=16, int8).")
    train: TrainConfig = Field(default_factory=TrainConfig,
                               description="The train stage (its seed is set per seed).")
    fit: FitConfig = Field(default_factory=FitConfig,
                           description="The fit stage (its seed and precision are set per seed).")
    precision: Precision = precision_field()
    compare_precision: Literal["bf16", "fp32"] | None = Field(
        None, description="Also run the HYDRA methods with the frozen bases in this precision, on "
                          "the same trained bases and heads and the same test queries: rows "
                          "<method>_<precision> (e.g. hydra_fp32) and the paired differences in "
                          "`precision_comparison` (hydralm/evaluation/variants.py). Must differ "
                          "from what `precision` resolves to; None: one precision.")
    compare_head: HeadConfig | None = Field(
        None, description="Also fit the test users' heads in this form (same bases, global "
                          "heads, labels and fit settings; both kinds) and run the HYDRA methods "
                          "with them on the same test queries: rows <method>_<form><rank>_<dtype> "
                          "(e.g. hydra_residual8_bf16) and the paired differences in "
                          "`head_comparison` (hydralm/evaluation/variants.py). Must differ from "
                          "the reranker's or the adapter's head; None: one head form.")
    work_dir: str | None = Field(None, description="Per-seed jobs, predictions and the cache. "
                                                   "None: HYDRALM_HOME/eval/<dataset>_<task>.")
    results_dir: str = Field("benchmarks/results", min_length=1,
                             description="Where the JSON, Markdown and PNG results go.")

    @field_validator("methods")
    @classmethod
    def _known_methods(cls, value: list[str]) -> list[str]:
        unknown = [m for m in value if m not in LLM_METHODS]
        if unknown:
            raise ValueError(f"unknown method {unknown[0]!r}; choose from {list(LLM_METHODS)}")
        if len(set(value)) != len(value):
            raise ValueError(f"methods must not repeat, got {value!r}")
        return [m for m in LLM_METHODS if m in value]  # table order

    @model_validator(mode="before")
    @classmethod
    def _kind_head_defaults(cls, data: object) -> object:
        return with_kind_head_defaults(data)

    @model_validator(mode="after")
    def _cross_field(self) -> EvalConfig:
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct, got {self.seeds!r}")
        if "precision" in self.fit.model_fields_set and self.fit.precision != self.precision:
            raise ValueError(f"fit.precision ({self.fit.precision!r}) differs from precision "
                             f"({self.precision!r}): the eval fits and scores in one precision; "
                             "set only the top-level precision")
        if self.compare_precision == self.precision:
            raise ValueError(f"compare_precision ({self.compare_precision!r}) equals precision: "
                             "compare with the other one")
        if self.compare_precision is not None and not any(needs_scorer(m) for m in self.methods):
            raise ValueError(f"compare_precision needs a HYDRA method (one with trained heads), "
                             f"got methods {self.methods!r}")
        if self.compare_head is not None:
            if not any(needs_scorer(m) for m in self.methods):
                raise ValueError(f"compare_head needs a HYDRA method (one with trained heads), "
                                 f"got methods {self.methods!r}")
            if self.compare_head == self.reranker.head == self.adapter.head:
                raise ValueError(f"compare_head ({self.compare_head.describe()}) is the head "
                                 "both models already have: compare with another form")
        synth = self.data.synth
        if synth is not None and self.users.train and self.users.test:
            wanted = self.users.train + self.users.test
            if synth.users < wanted:
                raise ValueError(f"data.synth.users ({synth.users}) must be at least users.train "
                                 f"+ users.test ({wanted}); raise data.synth.users")
        if self.generator.cache is None:
            self.generator.cache = join_uri(self.work_path, "generator-cache")
        self.job(self.seeds[0])  # the per-seed job must validate too (task vs data, labels)
        return self

    @property
    def dataset_name(self) -> str:
        if self.dataset is not None:
            return self.dataset
        if self.data.synth is not None:
            return "synth"
        source = self.data.lamp_dir or self.data.questions or self.data.parquet or "data"
        return Path(str(source).rstrip("/")).name.split(".")[0] or "data"

    @property
    def work_path(self) -> str:
        work = self.work_dir or str(home_dir() / "eval" / f"{self.dataset_name}_{self.task}")
        return work if work.startswith("s3://") else str(Path(work).expanduser().absolute())

    @property
    def result_stem(self) -> str:
        """quality_<dataset>_<task>: the name of the JSON, Markdown and PNG files."""
        return f"quality_{self.dataset_name}_{self.task}"

    def job(self, seed: int, head: HeadConfig | None = None, *,
            calibration: bool = False) -> JobConfig:
        """The training job of one seed: users drawn by it, its own work dir, the shared cache.
        With `head`: the same job whose test users' heads take that form, in a registry of its
        own beside the job's (`registry-<form><rank>_<dtype>`; same labels and work dir).
        With `calibration`: the guard's calibration job (`guard.heads: fitted`), where the seed's
        training users are fitted as new users, in <work_dir>/guard-calibration (its own labels
        and registry; same settings and cache). With both: the calibration job's users fitted in
        that form, in guard-calibration/registry-<form><rank>_<dtype>."""
        payload: dict[str, Any] = {
            "task": self.task, "data": self.data.model_dump(mode="json"),
            "users": UsersConfig(num_train_users=self.users.train,
                                 num_test_users=self.users.test, seed=seed).model_dump(),
            "generator": _dump_generator(self.generator),
            "reranker": self.reranker.model_dump(), "adapter": self.adapter.model_dump(),
            "labels": self.labels.model_dump(),
            "train": {**self.train.model_dump(), "seed": seed},
            "fit": {**self.fit.model_dump(), "seed": seed, "precision": self.precision},
            "work_dir": join_uri(self.work_path, f"seed-{seed}"),
        }
        if calibration:
            payload["work_dir"] = join_uri(payload["work_dir"], "guard-calibration")
        if head is not None:
            for kind in ("reranker", "adapter"):
                payload[kind] = {**payload[kind], "head": head.model_dump()}
            payload["registry"] = join_uri(payload["work_dir"], f"registry-{head_tag(head)}")
        return JobConfig.from_dict(payload, source=f"the job of seed {seed}")


def _dump_generator(cfg: GeneratorConfig) -> dict[str, Any]:
    data = cfg.model_dump(mode="json")
    # model_dump masks secrets ("**********"); pass the real key on.
    data["api_key"] = cfg.api_key.get_secret_value() if cfg.api_key is not None else None
    return data


def load_eval_config(path: str | Path, overrides: dict[str, Any] | None = None) -> EvalConfig:
    """Read an eval YAML, apply `overrides` (top-level keys, e.g. from command-line flags) and
    validate; ConfigError names the file and every bad field."""
    from hydralm.config import load_yaml

    data = {**load_yaml(path), **(overrides or {})}
    return EvalConfig.from_dict(data, source=str(path))
