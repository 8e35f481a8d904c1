"""`ServeArgs`: the one validated config of the serving app (`build_app(args)` validates it first).

Everything the app needs comes from here: the task, the registry, the history store, the generator
(an external OpenAI-compatible endpoint, or the embedded LLM app on the same Serve instance), the
Scorer deployment's arguments, the ingress' replicas and resources, the HYDRA pipeline sizes, the
API keys' source and per-request limits.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from hydralm.config import StrictModel
from hydralm.data.schema import TASK_NAMES, TaskName
from hydralm.generator import GeneratorConfig
from hydralm.history import SqliteHistoryStore
from hydralm.history_pg import PostgresHistoryStore
from hydralm.pipeline import METHODS, CandidateSampling, SelectionGuard
from hydralm.pipeline.selection import FallbackRule
from hydralm.settings import home_dir
from serving.ratelimit import RateLimit
from serving.scorer_config import ScorerArgs

__all__ = ["AuthConfig", "IngressArgs", "IngressAutoscaling", "RequestLimits", "ServeArgs"]


class AuthConfig(StrictModel):
    """Where the API keys come from. Keys are stored only as sha256 hex digests, each mapped to a
    tenant and the users it may act for (see serving/auth.py and docs/serving.md)."""

    keys_file: str | None = Field(
        None, description="JSON or YAML file {sha256(key): {tenant, users, user_prefixes}}, e.g. "
                          "a mounted Kubernetes Secret. None: the HYDRALM_API_KEYS environment "
                          "variable (same JSON); both empty: no API-key check.")
    required: bool = Field(
        False, description="Refuse to start when no keys are configured (production).")
    rate_limit: RateLimit = Field(
        default_factory=RateLimit,
        description="Every key's limits (requests/s, tokens/min) unless its key-table entry "
                    "sets its own `rate_limit`; with no keys, one bucket for all requests. "
                    "Enforced per ingress replica (serving/ratelimit.py).")


class RequestLimits(StrictModel):
    """Bounds on one request; anything beyond them is a 4xx naming the field."""

    max_body_bytes: int = Field(1 << 20, ge=1024, le=64 << 20,
                                description="Largest request body in bytes (413 beyond).")
    max_history_items: int = Field(100, ge=1, le=10_000,
                                   description="Items one history append may carry.")
    max_n: int = Field(16, ge=1, le=128,
                       description="Largest `n` (choices) and `n_candidates` (samples) asked for.")
    max_tokens: int = Field(512, ge=1, le=32_768,
                            description="Largest max_tokens a request may ask the generator for.")
    max_text_chars: int = Field(16_384, ge=16, le=1 << 20,
                                description="Longest text field (query, prompt, candidate, item "
                                            "field) in characters.")
    max_rerank_items: int = Field(100, ge=1, le=10_000,
                                  description="Items one /v1/rerank request may score.")
    max_score_candidates: int = Field(64, ge=1, le=10_000,
                                      description="Candidates one /v1/score request may score.")


class IngressAutoscaling(StrictModel):
    """Serve autoscaling of the ingress (replaces a fixed `num_replicas`)."""

    min_replicas: int = Field(1, ge=0, le=1024, description="Fewest replicas kept running.")
    max_replicas: int = Field(4, ge=1, le=1024, description="Most replicas started under load.")
    target_ongoing_requests: float = Field(
        8.0, gt=0, le=100_000, description="Requests in flight per replica autoscaling aims at; "
                                           "requests mostly wait on the generator.")

    @model_validator(mode="after")
    def _ordered(self) -> IngressAutoscaling:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas ({self.min_replicas}) must not exceed max_replicas "
                             f"({self.max_replicas})")
        return self


class IngressArgs(StrictModel):
    """The HTTP ingress deployment (FastAPI): replicas and resources."""

    name: str = Field("HydraIngress", min_length=1, max_length=64,
                      description="Serve deployment name.")
    num_replicas: int = Field(1, ge=1, le=1024,
                              description="Fixed replica count (ignored with autoscaling).")
    autoscaling_config: IngressAutoscaling | None = Field(
        None, description="Autoscale between min and max replicas instead of num_replicas.")
    num_cpus: float = Field(0.5, ge=0, le=64, description="CPUs reserved per replica.")
    max_ongoing_requests: int = Field(
        64, ge=1, le=100_000, description="Requests in flight per replica (each mostly waits on "
                                          "the generator, so far above Serve's default of 5).")

    def deployment_options(self) -> dict[str, Any]:
        """Keyword arguments of `Deployment.options`."""
        options: dict[str, Any] = {"name": self.name,
                                   "max_ongoing_requests": self.max_ongoing_requests,
                                   "ray_actor_options": {"num_cpus": self.num_cpus}}
        if self.autoscaling_config is not None:
            options["autoscaling_config"] = self.autoscaling_config.model_dump()
        else:
            options["num_replicas"] = self.num_replicas
        return options


class ServeArgs(StrictModel):
    """Arguments of `serving.app:build_app` (the `args:` of the hydralm app in a Serve config)."""

    task: TaskName = Field("synth-tag", description=f"The task served, one of {', '.join(TASK_NAMES)}.")
    model_name: str = Field(
        "hydralm", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$",
        description="Model id of GET /v1/models; `<model_name>:<method>` selects a baseline.")
    registry: str | None = Field(
        None, description="Model registry (local directory or s3://bucket/prefix). None: the "
                          "scorer's registry_uri, else HYDRALM_HOME/registry.")
    history_backend: Literal["sqlite", "postgres"] = Field(
        "sqlite", description="Users' histories (durable, idempotent appends): `sqlite`, a file "
                              "that the replicas of one node share (history_path); `postgres`, "
                              "a PostgreSQL database that every replica on every node shares, "
                              "reached through HYDRALM_HISTORY_DSN, HYDRALM_HISTORY_DSN_FILE "
                              "(a mounted Secret) or libpq's PG* variables, never this file.")
    history_path: str | None = Field(
        None, description="SQLite file of users' histories (history_backend: sqlite). Replicas "
                          "on one node share it. None: HYDRALM_HOME/serving/history.db.")
    base_history: str | None = Field(
        None, description="Parquet dataset (hydralm data ... output) whose users' profiles seed "
                          "the history store once, at the first start. None: no seeding.")
    generator: GeneratorConfig = Field(
        default_factory=GeneratorConfig,
        description="The black-box LLM. backend embedded without base_url: the hydralm-llm app "
                    "on this Serve instance at http://127.0.0.1:{embedded.http_port}"
                    "{embedded.route_prefix}/v1.")
    scorer: ScorerArgs = Field(default_factory=ScorerArgs,
                               description="The Scorer deployment (shared bases, user heads).")
    ingress: IngressArgs = Field(default_factory=IngressArgs, description="The HTTP ingress.")
    method: str = Field("hydra", description=f"Default method, one of {', '.join(METHODS)}.")
    n_candidates: int = Field(8, ge=1, le=128, description="Candidates sampled per query (N).")
    candidate_temperature: float = Field(
        1.0, gt=0.0, le=2.0, description="Sampling temperature of the candidates: the "
                                         "adapter's training labels' (labels.adapter_temperature).")
    greedy_candidate: bool = Field(
        False, description="One candidate is the personalized prompt's greedy answer (candidate 0, "
                           "or 1 after the bare query's), the others sampled: as the adapter's "
                           "training labels were drawn (labels.adapter_greedy_candidate).")
    bare_greedy_candidate: bool = Field(
        False, description="Candidate 0 is the bare query's greedy answer (the zero-shot "
                           "answer): as the adapter's training labels were drawn "
                           "(labels.adapter_bare_greedy_candidate).")
    bare_candidates: int = Field(
        0, ge=0, le=128, description="Of the N candidates, this many are sampled from the bare "
                                     "query instead of the personalized prompt "
                                     "(labels.adapter_bare_samples).")
    selection_min_spread: float = Field(
        0.0, ge=0.0, le=1.0,
        description="Adapter-score spread below which the adapter's pick counts as collapsed and "
                    "selection_fallback picks instead (0: never). Take it from `hydralm eval` "
                    "(run.eval.<seed>.guard.min_spread: chosen on training users; its rule "
                    "run.eval.<seed>.guard.rule is selection_fallback's).")
    selection_fallback: FallbackRule = Field(
        "consensus", description="What picks when the adapter's pick is collapsed: the candidate "
                                 "the others agree with most (consensus), the first candidate "
                                 "(first: the greedy answer; the bare query's with "
                                 "bare_greedy_candidate), or the candidate agreeing most with "
                                 "the user's own answers of the history items most like the "
                                 "query (history).")
    zero_fit_selection_min_spread: float | None = Field(
        None, ge=0.0, le=1.0,
        description="selection_min_spread for picks scored by a zero-fit head (a user with "
                    "history and no fitted head); null: selection_min_spread. Take it from "
                    "`hydralm eval` (run.eval.<seed>.guard.zero_fit.min_spread).")
    zero_fit_selection_fallback: FallbackRule | None = Field(
        None, description="selection_fallback for picks scored by a zero-fit head; null: "
                          "selection_fallback (run.eval.<seed>.guard.zero_fit.rule).")
    k_retrieve: int = Field(10, ge=1, le=1000, description="BM25 top-k handed to the reranker.")
    k_prompt: int = Field(4, ge=0, le=1000, description="Reranked items put into the prompt.")
    auth: AuthConfig = Field(default_factory=AuthConfig, description="API keys.")
    limits: RequestLimits = Field(default_factory=RequestLimits, description="Request bounds.")

    def sampling(self) -> CandidateSampling:
        """How the N candidates are drawn (as the adapter's training labels were)."""
        return CandidateSampling(n=self.n_candidates, temperature=self.candidate_temperature,
                                 greedy_first=self.greedy_candidate,
                                 bare_greedy=self.bare_greedy_candidate,
                                 bare_samples=self.bare_candidates)

    def selection_guard(self) -> SelectionGuard:
        """When the adapter's pick is replaced, and by what (hydralm/pipeline/selection.py)."""
        zero_fit = None
        if (self.zero_fit_selection_min_spread, self.zero_fit_selection_fallback) != (None, None):
            zero_fit = SelectionGuard(
                self.selection_min_spread if self.zero_fit_selection_min_spread is None
                else self.zero_fit_selection_min_spread,
                self.zero_fit_selection_fallback or self.selection_fallback)
        return SelectionGuard(self.selection_min_spread, self.selection_fallback, zero_fit)

    @field_validator("method")
    @classmethod
    def _known_method(cls, value: str) -> str:
        if value not in METHODS:
            raise ValueError(f"unknown method {value!r}; choose one of {sorted(METHODS)}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ServeArgs:
        if self.k_prompt > self.k_retrieve:
            raise ValueError(f"k_prompt ({self.k_prompt}) must not exceed k_retrieve "
                             f"({self.k_retrieve})")
        if self.n_candidates > self.limits.max_n:
            raise ValueError(f"n_candidates ({self.n_candidates}) must not exceed limits.max_n "
                             f"({self.limits.max_n})")
        fixed = self.greedy_candidate + self.bare_greedy_candidate + self.bare_candidates
        if fixed > self.n_candidates:
            raise ValueError(f"bare_candidates ({self.bare_candidates}) plus the greedy "
                             f"candidates ({fixed - self.bare_candidates}) exceed n_candidates "
                             f"({self.n_candidates})")
        scorer_uri = self.scorer.registry_uri
        if self.history_backend == "postgres" and self.history_path is not None:
            raise ValueError(f"history_path ({self.history_path!r}) is a SQLite file; with "
                             "history_backend postgres the connection comes from "
                             "HYDRALM_HISTORY_DSN(_FILE): leave history_path null")
        if self.registry and scorer_uri and self.registry != scorer_uri:
            raise ValueError(f"registry ({self.registry!r}) and scorer.registry_uri "
                             f"({scorer_uri!r}) differ; set only one")
        return self

    def registry_uri(self) -> str:
        return self.registry or self.scorer.resolved_registry_uri()

    def scorer_args(self) -> ScorerArgs:
        """The Scorer's arguments with the registry filled in from `registry`."""
        return self.scorer.model_copy(update={"registry_uri": self.registry_uri()})

    def history_file(self) -> str:
        return self.history_path or str(home_dir() / "serving" / "history.db")

    def open_history(self) -> SqliteHistoryStore | PostgresHistoryStore:
        """The history store this config names (PostgreSQL: connection from the environment)."""
        if self.history_backend == "postgres":
            return PostgresHistoryStore()
        return SqliteHistoryStore(self.history_file())

    def history_where(self) -> str:
        """Where the history lives, for logs (never a password)."""
        return "postgres" if self.history_backend == "postgres" else self.history_file()

    def generator_base_url(self) -> str:
        """The OpenAI base URL the ingress calls: HYDRALM_GENERATOR_BASE_URL, base_url, or the
        embedded LLM app on this Serve instance."""
        url = self.generator.effective_base_url()
        if url:
            return url
        emb = self.generator.embedded
        return f"http://127.0.0.1:{emb.http_port}{emb.route_prefix}/v1"
