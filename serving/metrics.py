"""hydralm's serving metrics, made with `ray.serve.metrics`: each replica reports them to its node's
Ray metrics agent, which serves them in Prometheus format on the node's metrics export port (with
Ray's `ray_` prefix and the deployment/replica/application tags), beside Ray Serve's own
`ray_serve_*` series. Outside a Ray worker the same calls are no-ops, so unit tests can use them.

Series (names before Ray's prefix):
- hydralm_http_requests{route, status}: requests by route template and status code;
- hydralm_request_latency_ms{route}: end-to-end latency of each request in the ingress;
- hydralm_stage_latency_ms{route, stage}: pipeline stages (retrieve, rerank, generate, adapter,
  total; score and history for the scoring-only and history routes);
- hydralm_heads_served{kind, head}: which head (user, zero_fit or global) scored, per model kind;
- hydralm_generator_requests / _retries / _errors / _short_circuits: HTTP attempts to the
  generator, retried attempts, calls that failed after every retry, and calls the open circuit
  breaker refused without an attempt (from GeneratorClient.stats);
- hydralm_tokens{tenant, kind}: generator tokens (prompt, completion) spent per tenant, as the
  responses' `usage` counts them;
- hydralm_rate_limited{tenant, limit}: requests refused with 429 per tenant and limit (requests,
  tokens);
- hydralm_stream_errors{route, code}: streamed responses that ended in an error event (after the
  200 was sent, so hydralm_http_requests counts them as 200).

`tenant` is the API key's tenant, `none` with auth off.
"""

from __future__ import annotations

import logging

from ray.serve.metrics import Counter, Histogram

from hydralm.generator import GeneratorStats

__all__ = ["LATENCY_BOUNDARIES_MS", "ServingMetrics"]

log = logging.getLogger(__name__)

LATENCY_BOUNDARIES_MS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 30_000,
                         60_000]


class ServingMetrics:
    """The ingress' metrics; one instance per replica."""

    def __init__(self) -> None:
        self._requests = Counter(
            "hydralm_http_requests", description="HTTP requests by route template and status.",
            tag_keys=("route", "status"))
        self._latency = Histogram(
            "hydralm_request_latency_ms", description="Request latency in the ingress (ms).",
            boundaries=LATENCY_BOUNDARIES_MS, tag_keys=("route",))
        self._stages = Histogram(
            "hydralm_stage_latency_ms", description="Latency of each pipeline stage (ms).",
            boundaries=LATENCY_BOUNDARIES_MS, tag_keys=("route", "stage"))
        self._heads = Counter(
            "hydralm_heads_served", description="Scoring calls by model kind and head served "
                                                "(user: the user's own; zero_fit: training "
                                                "users' heads mixed by history; global: "
                                                "fallback).",
            tag_keys=("kind", "head"))
        self._gen = {
            name: Counter(f"hydralm_generator_{name}", description=doc)
            for name, doc in [("requests", "HTTP attempts to the generator."),
                              ("retries", "Generator attempts retried after a failure."),
                              ("errors", "Generator calls that failed after every retry."),
                              ("short_circuits", "Generator calls refused at once by the "
                                                 "open circuit breaker.")]}
        self._gen_seen = {name: 0 for name in self._gen}
        self._tokens = Counter(
            "hydralm_tokens", description="Generator tokens spent per tenant (as usage counts "
                                          "them).", tag_keys=("tenant", "kind"))
        self._rate_limited = Counter(
            "hydralm_rate_limited", description="Requests refused by a per-key rate limit.",
            tag_keys=("tenant", "limit"))
        self._stream_errors = Counter(
            "hydralm_stream_errors", description="Streamed responses ended by an error event.",
            tag_keys=("route", "code"))

    def request(self, route: str, status: int, latency_ms: float) -> None:
        self._requests.inc(1, {"route": route, "status": str(status)})
        self._latency.observe(latency_ms, {"route": route})

    def stages(self, route: str, timings_ms: dict[str, float]) -> None:
        """Observe each `<stage>_ms` timing (PersonalizeResult.timings_ms' naming)."""
        for key, ms in timings_ms.items():
            self._stages.observe(ms, {"route": route, "stage": key.removesuffix("_ms")})

    def heads(self, heads: dict[str, str]) -> None:
        for kind, head in heads.items():
            self._heads.inc(1, {"kind": kind, "head": head})

    def tokens(self, tenant: str | None, prompt_tokens: int, completion_tokens: int) -> None:
        for kind, count in (("prompt", prompt_tokens), ("completion", completion_tokens)):
            if count > 0:
                self._tokens.inc(count, {"tenant": tenant or "none", "kind": kind})

    def rate_limited(self, tenant: str | None, limit: str) -> None:
        self._rate_limited.inc(1, {"tenant": tenant or "none", "limit": limit})

    def stream_error(self, route: str, code: str | None) -> None:
        self._stream_errors.inc(1, {"route": route, "code": code or "unknown"})

    def generator(self, stats: GeneratorStats) -> None:
        """Export what the client did since the last call (its counters only grow)."""
        for name, counter in self._gen.items():
            total = int(getattr(stats, name))
            delta = total - self._gen_seen[name]
            if delta > 0:
                counter.inc(delta)
                self._gen_seen[name] = total
