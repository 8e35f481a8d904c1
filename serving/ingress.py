"""The HTTP routes: each parses its body (serving.protocol, serving.openai_protocol), checks the
key, its rate limits and the request limits, calls `HydraService`, and shapes the answer (JSON, or
server-sent events for `stream: true`, serving/streaming.py). No logic lives here; errors map in
serving/errors.py.

`create_api(...)` builds the FastAPI app from its parts (held in `app.state.hydra`), so the same
routes run inside the Serve ingress (serving/app.py) and under a plain test client.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Annotated, Literal, TypeVar

from fastapi import APIRouter, Depends, FastAPI, Header, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.convertors import Convertor, register_url_convertor

from hydralm.pipeline import PersonalizeResult
from serving.auth import Authenticator, KeyGrant
from serving.config import RequestLimits
from serving.errors import InvalidRequest, install_error_handlers
from serving.metrics import ServingMetrics
from serving.middleware import BodyLimit, RequestMetrics
from serving.openai_protocol import (
    ChatCompletionRequest,
    ChatCompletionResponse,
    CompletionRequest,
    CompletionResponse,
    HydraInfo,
    Usage,
)
from serving.protocol import (
    Candidate,
    HistoryAppendRequest,
    HistoryAppendResponse,
    ModelCard,
    ModelList,
    PersonalizeRequest,
    PersonalizeResponse,
    RerankRequest,
    RerankResponse,
    ScoreRequest,
    ScoreResponse,
    check_user_id,
    validate_history_items,
)
from serving.ratelimit import RateLimited, RateLimiter
from serving.service import Answer, HydraService, head_summary
from serving.streaming import ChunkWriter, Completed, sse_response

__all__ = ["HISTORY_ROUTE", "Context", "create_api", "router"]

R = TypeVar("R")


class _AnyUserId(Convertor[str]):
    """Starlette's `:path` (`.*`) without its blind spot: it also matches a newline, so every
    malformed id in the path reaches the handler and gets a 400 naming user_id, not a 404."""

    regex = r"[\s\S]*"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("any_user_id", _AnyUserId())
# ids with '/' (e.g. '../x') or a newline reach the handler and get a 400 naming user_id
HISTORY_ROUTE = "/v1/users/{user_id:any_user_id}/history"


@dataclass(frozen=True)
class Context:
    """What the routes work with; one per app."""

    service: HydraService
    auth: Authenticator
    limits: RequestLimits
    metrics: ServingMetrics
    limiter: RateLimiter

    def user(self, grant: KeyGrant | None, user: str | None, param: str = "user") -> str:
        return self.auth.identify(grant, user, param=param).user

    async def pipeline(self, route: str, call: Awaitable[R]) -> R:
        """Await a pipeline call, then export its stage timings and heads; the generator's
        counters are exported whatever happened (its failures are what they count)."""
        try:
            out = await call
        finally:
            self._generator_stats()
        result: PersonalizeResult = out.result if isinstance(out, Answer) else out
        self.metrics.stages(route, result.timings_ms)
        self.metrics.heads(result.heads)
        return out

    def _generator_stats(self) -> None:
        stats = getattr(self.service.generator, "stats", None)  # GeneratorClient's counters
        if stats is not None:
            self.metrics.generator(stats)

    def timed(self, route: str, stage: str, start: float) -> None:
        self.metrics.stages(route, {stage: (time.perf_counter() - start) * 1000.0})

    def admit(self, grant: KeyGrant | None) -> None:
        """Take one request from the key's rate limits; 429 (counted) when it is over one."""
        key_id, limit = self.auth.rate_limit(grant)
        try:
            self.limiter.admit(key_id, limit)
        except RateLimited as exc:
            self.metrics.rate_limited(grant.tenant if grant else None, exc.kind)
            raise

    async def complete(self, route: str, grant: KeyGrant | None, user: str,
                       body: ChatCompletionRequest | CompletionRequest, query: str,
                       max_tokens: int | None, echo: str = "") -> Completed:
        """An OpenAI route's answer; its generator tokens are charged to the key and counted."""
        answer = await self.pipeline(route, self.service.complete(
            user, body.model, query, n=body.choices_wanted(), max_tokens=max_tokens,
            temperature=body.temperature, options=body.sampling_options(), seed=body.seed))
        return self._completed(grant, user, answer, echo)

    async def stream(self, route: str, grant: KeyGrant | None, user: str,
                     body: ChatCompletionRequest | CompletionRequest, query: str,
                     max_tokens: int | None, echo: str = "") -> AsyncIterator[str | Completed]:
        """A streamed answer: the generator's text as it comes for methods that answer with one
        sample (then the Completed), else the Completed once the pipeline has chosen."""
        if not self.service.streams_live(body.model, body.seed):
            yield await self.complete(route, grant, user, body, query, max_tokens, echo)
            return
        if echo:
            yield echo
        try:
            async for piece in self.service.complete_stream(
                    user, body.model, query, max_tokens=max_tokens,
                    temperature=body.temperature, options=body.sampling_options()):
                if isinstance(piece, str):
                    yield piece
                else:
                    self.metrics.stages(route, piece.result.timings_ms)
                    self.metrics.heads(piece.result.heads)
                    yield self._completed(grant, user, piece, echo)
        finally:
            self._generator_stats()

    def _completed(self, grant: KeyGrant | None, user: str, answer: Answer,
                   echo: str) -> Completed:
        """The answer as the routes send it; its generator tokens charged to the key."""
        r = answer.result
        key_id, limit = self.auth.rate_limit(grant)
        self.limiter.spend_tokens(key_id, limit, r.prompt_tokens + r.completion_tokens)
        self.metrics.tokens(grant.tenant if grant else None, r.prompt_tokens,
                            r.completion_tokens)
        return Completed(texts=[echo + t for t in answer.texts],
                         finish_reasons=answer.finish_reasons,
                         usage=Usage.of(r.prompt_tokens, r.completion_tokens),
                         hydra=_hydra_info(user, answer))


def _context(request: Request) -> Context:
    return request.app.state.hydra


def _grant(request: Request,
           authorization: Annotated[str | None, Header()] = None) -> KeyGrant | None:
    """The request's key grant (None: auth off); 401 on a missing or unknown key, 429 over its
    rate limits. A dependency, so it runs before the body is validated: an unauthenticated
    caller learns nothing."""
    ctx = _context(request)
    grant = ctx.auth.grant(authorization)
    ctx.admit(grant)
    return grant


Ctx = Annotated[Context, Depends(_context)]
Grant = Annotated[KeyGrant | None, Depends(_grant)]
router = APIRouter()


def _hydra_info(user: str, answer: Answer) -> HydraInfo:
    r = answer.result
    return HydraInfo(user=user, method=answer.method, head=head_summary(r.heads), heads=r.heads,
                     prompt_item_ids=r.prompt_item_ids, adapter_scores=r.adapter_scores,
                     selection=r.selection, timings_ms=r.timings_ms)


def _ranking(scores: list[float]) -> list[int]:
    return sorted(range(len(scores)), key=lambda i: (-scores[i], i))


def _hydra_headers(hydra: HydraInfo) -> dict[str, str]:
    """The hydra extension's gist as headers, for clients that keep only standard fields."""
    return {"x-hydra-user": hydra.user, "x-hydra-method": hydra.method,
            "x-hydra-head": hydra.head}


def _stream(ctx: Context, route: str, kind: Literal["chat", "text"],
            body: ChatCompletionRequest | CompletionRequest,
            source: Callable[[], AsyncIterator[str | Completed]]) -> StreamingResponse:
    # what can be refused is refused before the 200 goes out
    ctx.service.check_completion(body.model, body.choices_wanted())
    writer = ChunkWriter(kind, body.model, include_usage=body.include_usage())
    return sse_response(writer, body.choices_wanted(), source,
                        on_error=lambda code: ctx.metrics.stream_error(route, code))


@router.post("/v1/chat/completions", response_model=None,
             responses={200: {"model": ChatCompletionResponse}})
async def chat_completions(body: ChatCompletionRequest, grant: Grant, ctx: Ctx,
                           response: Response) -> ChatCompletionResponse | StreamingResponse:
    user = ctx.user(grant, body.user)
    body.refusals()
    body.check_limits(ctx.limits)
    route = "/v1/chat/completions"
    args = (route, grant, user, body, body.query(), body.token_limit())
    if body.stream:
        return _stream(ctx, route, "chat", body, partial(ctx.stream, *args))
    done = await ctx.complete(*args)
    response.headers.update(_hydra_headers(done.hydra))
    return ChatCompletionResponse.of(body.model, done.texts, done.finish_reasons, done.usage,
                                     done.hydra)


@router.post("/v1/completions", response_model=None,
             responses={200: {"model": CompletionResponse}})
async def completions(body: CompletionRequest, grant: Grant, ctx: Ctx,
                      response: Response) -> CompletionResponse | StreamingResponse:
    user = ctx.user(grant, body.user)
    body.refusals()
    body.check_limits(ctx.limits)
    route = "/v1/completions"
    query = body.query()
    args = (route, grant, user, body, query, body.max_tokens, query if body.echo else "")
    if body.stream:
        return _stream(ctx, route, "text", body, partial(ctx.stream, *args))
    done = await ctx.complete(*args)
    response.headers.update(_hydra_headers(done.hydra))
    return CompletionResponse.of(body.model, done.texts, done.finish_reasons, done.usage,
                                 done.hydra)


@router.post("/v1/personalize", response_model=PersonalizeResponse)
async def personalize(body: PersonalizeRequest, grant: Grant, ctx: Ctx) -> PersonalizeResponse:
    user = ctx.user(grant, body.user)
    body.check_limits(ctx.limits)
    r = await ctx.pipeline("/v1/personalize", ctx.service.personalize(
        user, body.input, method=body.method, n_candidates=body.n_candidates,
        max_tokens=body.max_tokens))
    scores = r.adapter_scores or [None] * len(r.candidates)
    return PersonalizeResponse(
        user=user, method=body.method or ctx.service.settings.method, answer=r.answer,
        head=head_summary(r.heads), heads=r.heads, retrieved_ids=r.retrieved_ids,
        rerank_scores=r.rerank_scores, prompt_item_ids=r.prompt_item_ids, prompt=r.prompt,
        candidates=[Candidate(text=t, score=s) for t, s in zip(r.candidates, scores, strict=True)],
        selection=r.selection, timings_ms=r.timings_ms)


@router.post("/v1/rerank", response_model=RerankResponse)
async def rerank(body: RerankRequest, grant: Grant, ctx: Ctx) -> RerankResponse:
    user = ctx.user(grant, body.user)
    body.check_limits(ctx.limits)
    items = None if body.items is None else validate_history_items(
        body.items, ctx.service.task.name, ctx.limits, max_items=ctx.limits.max_rerank_items)
    start = time.perf_counter()
    scored, ids = await ctx.service.rerank(user, body.query, items=items,
                                           item_ids=body.item_ids)
    ctx.timed("/v1/rerank", "rerank", start)
    ctx.metrics.heads({"reranker": scored.head})
    return RerankResponse(user=user, head=scored.head, scores=scored.scores,
                          ranking=_ranking(scored.scores), item_ids=ids)


@router.post("/v1/score", response_model=ScoreResponse)
async def score(body: ScoreRequest, grant: Grant, ctx: Ctx) -> ScoreResponse:
    user = ctx.user(grant, body.user)
    body.check_limits(ctx.limits)
    start = time.perf_counter()
    scored = await ctx.service.score(user, body.query, body.prompt, body.candidates)
    ctx.timed("/v1/score", "adapter", start)
    ctx.metrics.heads({"adapter": scored.head})
    return ScoreResponse(user=user, head=scored.head, scores=scored.scores,
                         best=_ranking(scored.scores)[0])


@router.post(HISTORY_ROUTE, response_model=HistoryAppendResponse)
async def append_history(user_id: str, body: HistoryAppendRequest, grant: Grant,
                         ctx: Ctx) -> HistoryAppendResponse:
    try:
        check_user_id(user_id)
    except ValueError as exc:
        raise InvalidRequest(f"user_id: {exc}", param="user_id") from exc
    user = ctx.user(grant, user_id, param="user_id")
    items = validate_history_items(body.items, ctx.service.task.name, ctx.limits,
                                   max_items=ctx.limits.max_history_items)
    start = time.perf_counter()
    length = await ctx.service.append_history(user, items)
    ctx.timed(HISTORY_ROUTE, "history", start)
    return HistoryAppendResponse(user=user, appended=len(items), history_length=length)


@router.get("/v1/models", response_model=ModelList)
async def models(grant: Grant, ctx: Ctx) -> ModelList:
    return ModelList(data=[ModelCard(id=m) for m in ctx.service.model_ids()])


@router.get("/v1/models/{model}", response_model=ModelCard)
async def model(model: str, grant: Grant, ctx: Ctx) -> ModelCard:
    ctx.service.method_for_model(model)  # 404 naming `model` when unknown
    return ModelCard(id=model)


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(ctx: Ctx) -> JSONResponse:
    checks = await ctx.service.readiness()
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse({"status": "ready" if ready else "unavailable", "checks": checks},
                        status_code=200 if ready else 503)


def create_api(service: HydraService, auth: Authenticator, limits: RequestLimits,
               metrics: ServingMetrics) -> FastAPI:
    """The FastAPI app of the hydralm API over `service`."""
    api = FastAPI(title="hydralm", summary="HYDRA-personalized, OpenAI-compatible LLM API",
                  version="0.1.0")
    api.state.hydra = Context(service=service, auth=auth, limits=limits, metrics=metrics,
                              limiter=RateLimiter())
    install_error_handlers(api)
    api.include_router(router)
    api.add_middleware(BodyLimit, max_bytes=limits.max_body_bytes)
    api.add_middleware(RequestMetrics, metrics=metrics)  # outermost: sees 413s too
    return api
