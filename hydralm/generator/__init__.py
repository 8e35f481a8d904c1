"""The black-box generator: an async client of any OpenAI-compatible API (the embedded vLLM, a
vLLM cluster, OpenAI, Azure) with bounded concurrency, retries and a response cache, plus the
settings of the embedded vLLM that the Ray side deploys. HYDRA only sends prompts and reads text.
"""

from hydralm.generator.breaker import BreakerState, CircuitBreaker
from hydralm.generator.cache import ResponseCache, cache_key
from hydralm.generator.client import GeneratorClient
from hydralm.generator.config import CircuitBreakerConfig, EmbeddedConfig, GeneratorConfig
from hydralm.generator.embedded import llm_config_kwargs, prepare_smollm2, resolve_model_dir
from hydralm.generator.errors import (
    GeneratorBadResponse,
    GeneratorCallError,
    GeneratorCircuitOpen,
    GeneratorRequestRejected,
    GeneratorTimeout,
    GeneratorUnavailable,
)
from hydralm.generator.protocol import (
    ChatRequest,
    CompletionRequest,
    Request,
    Samples,
    SamplingOptions,
)
from hydralm.generator.stats import GeneratorStats

# The architecture doc's name for llm_config_kwargs.
embedded_llm_config = llm_config_kwargs

__all__ = [
    "BreakerState",
    "ChatRequest",
    "CircuitBreaker",
    "CircuitBreakerConfig",
    "CompletionRequest",
    "EmbeddedConfig",
    "GeneratorBadResponse",
    "GeneratorCallError",
    "GeneratorCircuitOpen",
    "GeneratorClient",
    "GeneratorConfig",
    "GeneratorRequestRejected",
    "GeneratorStats",
    "GeneratorTimeout",
    "GeneratorUnavailable",
    "Request",
    "ResponseCache",
    "Samples",
    "SamplingOptions",
    "cache_key",
    "embedded_llm_config",
    "llm_config_kwargs",
    "prepare_smollm2",
    "resolve_model_dir",
]
