"""The Scorer deployment's validated arguments: where the registry is, how many replicas and what
they need, and how requests are routed (user buckets), cached (head LRU) and batched."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field, model_validator

from hydralm.config import StrictModel
from hydralm.model.precision import Precision, precision_field
from hydralm.settings import home_dir

__all__ = ["ScorerArgs", "ScorerAutoscaling"]

# Pairs per base encoder call when max_forward_pairs is not set (see its description).
CPU_FORWARD_PAIRS = 8
GPU_FORWARD_PAIRS = 512


class ScorerAutoscaling(StrictModel):
    """Serve autoscaling of the Scorer (replaces a fixed `num_replicas`)."""

    min_replicas: int = Field(1, ge=0, le=1024, description="Fewest replicas kept running.")
    max_replicas: int = Field(4, ge=1, le=1024, description="Most replicas started under load.")
    target_ongoing_requests: float = Field(
        32.0, gt=0, le=100_000,
        description="Requests in flight per replica that autoscaling aims at. Batching needs "
                    "many in flight, so this is much higher than Serve's default of 2.")
    upscale_delay_s: float = Field(5.0, ge=0, le=3600, description="Load must last this long "
                                                                   "before scaling up.")
    downscale_delay_s: float = Field(60.0, ge=0, le=3600, description="Idle must last this long "
                                                                      "before scaling down.")

    @model_validator(mode="after")
    def _ordered(self) -> ScorerAutoscaling:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas ({self.min_replicas}) must not exceed max_replicas "
                             f"({self.max_replicas})")
        return self


class ScorerArgs(StrictModel):
    """Arguments of `serving.scorer.build_scorer`."""

    registry_uri: str | None = Field(
        None, description="The model registry (local directory or s3://bucket/prefix) holding the "
                          "reranker and adapter bases and heads. None: HYDRALM_HOME/registry.")
    name: str = Field("Scorer", min_length=1, max_length=64,
                      description="Serve deployment name.")
    num_replicas: int = Field(1, ge=1, le=1024,
                              description="Fixed replica count (ignored with autoscaling).")
    autoscaling_config: ScorerAutoscaling | None = Field(
        None, description="Autoscale between min and max replicas instead of num_replicas.")
    num_cpus: float = Field(1.0, ge=0, le=512, description="CPUs reserved per replica.")
    num_gpus: float = Field(0.0, ge=0, le=64, description="GPUs reserved per replica.")
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="Where the encoders run: auto picks cuda when the replica has a GPU.")
    precision: Precision = precision_field()
    torch_threads: int = Field(
        0, ge=0, le=512,
        description="torch intra-op threads per replica; 0: one per reserved CPU (at least 1).")
    max_ongoing_requests: int = Field(
        512, ge=1, le=100_000,
        description="Requests in flight per replica. Cross-user batches can only be as large as "
                    "what is in flight, so this is far above Serve's default of 5.")
    head_cache_capacity: int = Field(
        4096, ge=1, le=10_000_000,
        description="Users' heads kept per model kind per replica (LRU). A head is d*d+2*d floats "
                    "(about 0.6 MB for a 384-d base).")
    max_batch_size: int = Field(
        32, ge=1, le=65_536,
        description="Most (first, second) pairs in one @serve.batch call: requests are counted by "
                    "their pairs, not one each, since the forward pass costs per pair.")
    batch_wait_timeout_s: float = Field(
        0.005, ge=0, le=10, description="How long a batch waits to fill before it runs.")
    max_concurrent_batches: int = Field(
        16, ge=1, le=1024,
        description="Batches handed to the scorer at once; concurrent batches (e.g. of different "
                    "buckets) are merged into the next forward pass, so this does not multiply "
                    "compute.")
    max_forward_pairs: int | None = Field(
        None, ge=1, le=65_536,
        description="Most pairs in one base encoder call: everything queued goes into one "
                    "scoring pass, sorted by length and cut into encoder calls of this size. "
                    f"None: {CPU_FORWARD_PAIRS} on CPU (small calls are fastest per pair there: "
                    f"benchmarks/serve_load.py), {GPU_FORWARD_PAIRS} on a GPU.")
    num_buckets: int = Field(
        8, ge=1, le=65_536,
        description="User buckets (stable hash of the user id): the routing key sent as Serve's "
                    "multiplexed model id. More buckets spread users finer over replicas; a "
                    "@serve.batch call only mixes users of one bucket.")
    max_buckets_per_replica: int | None = Field(
        None, ge=1, le=65_536,
        description="Buckets a replica holds at once (Serve multiplexing LRU). None: "
                    "ceil(num_buckets / replicas) + 1, so each replica keeps a share of the users.")
    poll_interval_s: float = Field(
        2.0, ge=0, le=3600,
        description="Least time between two checks of the registry's manifest version (new heads "
                    "or a new base are picked up without a restart).")
    load_attempts: int = Field(3, ge=1, le=20, description="Tries per head load (transient "
                                                          "storage errors only).")

    @model_validator(mode="after")
    def _buckets_cover(self) -> ScorerArgs:
        if self.max_buckets_per_replica is not None and self.max_buckets_per_replica > \
                self.num_buckets:
            raise ValueError(f"max_buckets_per_replica ({self.max_buckets_per_replica}) must not "
                             f"exceed num_buckets ({self.num_buckets})")
        if self.max_batch_size * self.max_concurrent_batches > self.max_ongoing_requests:
            raise ValueError(
                f"max_batch_size * max_concurrent_batches ({self.max_batch_size} * "
                f"{self.max_concurrent_batches}) must not exceed max_ongoing_requests "
                f"({self.max_ongoing_requests}): a replica could never have enough requests in "
                "flight to fill its batches; raise max_ongoing_requests")
        if self.device == "cuda" and self.num_gpus == 0:
            raise ValueError("device 'cuda' needs num_gpus > 0 (got 0): a replica without a "
                             "reserved GPU must not use one")
        return self

    def resolved_registry_uri(self) -> str:
        return self.registry_uri or str(home_dir() / "registry")

    def buckets_per_replica(self) -> int:
        if self.max_buckets_per_replica is not None:
            return self.max_buckets_per_replica
        scaling = self.autoscaling_config
        replicas = scaling.min_replicas if scaling else self.num_replicas
        return min(self.num_buckets, math.ceil(self.num_buckets / max(replicas, 1)) + 1)

    def forward_pairs(self, device: str) -> int:
        """Pairs per base encoder call on `device` (max_forward_pairs, or its default there)."""
        if self.max_forward_pairs is not None:
            return self.max_forward_pairs
        return GPU_FORWARD_PAIRS if device.startswith("cuda") else CPU_FORWARD_PAIRS

    def threads(self) -> int:
        return self.torch_threads or max(1, math.floor(self.num_cpus))

    def deployment_options(self) -> dict[str, Any]:
        """Keyword arguments of `Deployment.options` (replicas, resources, concurrency)."""
        options: dict[str, Any] = {
            "name": self.name,
            "max_ongoing_requests": self.max_ongoing_requests,
            "ray_actor_options": {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus},
        }
        if self.autoscaling_config is not None:
            options["autoscaling_config"] = self.autoscaling_config.model_dump()
        else:
            options["num_replicas"] = self.num_replicas
        return options
