"""The ONE place where exceptions become HTTP: OpenAI-shaped error JSON and a status code.

Routes raise `ApiError`s (or let library exceptions through); `install_error_handlers(app)` maps
every exception to `{"error": {"message", "type", "param", "code"}}`, the body the `openai` client
parses. Validation errors name the offending field in `param` (dotted, e.g. `messages.0.content`).
Anything unexpected is a 500 whose body says nothing about the request; the traceback goes to the
log, never the request body (it may hold history text) or the API key.
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass, replace
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from ray.exceptions import RayActorError
from ray.serve.exceptions import (
    BackPressureError,
    DeploymentUnavailableError,
    ReplicaUnavailableError,
)
from starlette.exceptions import HTTPException as StarletteHTTPException

from hydralm.errors import (
    ArtifactError,
    ConfigError,
    DataValidationError,
    GeneratorError,
    HistoryUnavailableError,
    HydraError,
    NotFoundError,
    StaleHeadError,
)
from hydralm.generator.errors import (
    GeneratorBadResponse,
    GeneratorCircuitOpen,
    GeneratorRequestRejected,
    GeneratorTimeout,
    GeneratorUnavailable,
)
from serving.ratelimit import RateLimited

__all__ = [
    "ApiError",
    "AuthenticationFailed",
    "Conflict",
    "InvalidRequest",
    "NotFound",
    "PayloadTooLarge",
    "PermissionDenied",
    "ServiceUnavailable",
    "error_body",
    "install_error_handlers",
    "map_exception",
]

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error the API reports as is: its status, OpenAI error type, code and offending field."""

    status: int = 500
    type: str = "server_error"
    default_code: str | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code if code is not None else self.default_code


class InvalidRequest(ApiError):
    status, type, default_code = 400, "invalid_request_error", "invalid_value"


class AuthenticationFailed(ApiError):
    status, type, default_code = 401, "authentication_error", "invalid_api_key"


class PermissionDenied(ApiError):
    status, type, default_code = 403, "permission_error", "user_not_allowed"


class NotFound(ApiError):
    status, type, default_code = 404, "not_found_error", "not_found"


class Conflict(ApiError):
    status, type, default_code = 409, "conflict_error", "conflict"


class PayloadTooLarge(ApiError):
    status, type, default_code = 413, "invalid_request_error", "request_too_large"


class ServiceUnavailable(ApiError):
    status, type, default_code = 503, "service_unavailable_error", "service_unavailable"


@dataclass(frozen=True)
class Mapped:
    """What one exception becomes on the wire."""

    status: int
    type: str
    message: str
    param: str | None = None
    code: str | None = None
    retry_after_s: float | None = None   # sent as Retry-After (whole seconds, at least 1)


# Library and Ray exceptions, most specific first: (class, status, OpenAI type, code).
_TABLE: list[tuple[type[BaseException], int, str, str]] = [
    (GeneratorCircuitOpen, 503, "service_unavailable_error", "generator_circuit_open"),
    (GeneratorTimeout, 504, "server_error", "generator_timeout"),
    (GeneratorUnavailable, 503, "service_unavailable_error", "generator_unavailable"),
    (GeneratorBadResponse, 502, "server_error", "generator_bad_response"),
    (GeneratorRequestRejected, 502, "server_error", "generator_rejected_request"),
    (GeneratorError, 503, "service_unavailable_error", "generator_unavailable"),
    (HistoryUnavailableError, 503, "service_unavailable_error", "history_unavailable"),
    (StaleHeadError, 500, "server_error", "artifact_error"),   # escapes only for a global head
    (NotFoundError, 404, "not_found_error", "not_found"),
    (ArtifactError, 500, "server_error", "artifact_error"),
    (ConfigError, 500, "server_error", "config_error"),
    (BackPressureError, 503, "service_unavailable_error", "overloaded"),
    (DeploymentUnavailableError, 503, "service_unavailable_error", "deployment_unavailable"),
    (ReplicaUnavailableError, 503, "service_unavailable_error", "replica_unavailable"),
    (RayActorError, 503, "service_unavailable_error", "replica_unavailable"),
    (asyncio.TimeoutError, 504, "server_error", "timeout"),
]

# FastAPI's detail when json.loads fails other than by a syntax error (UnicodeDecodeError on bytes
# that are not UTF-8, RecursionError on deep nesting): it names no field, so it is rewritten.
_UNPARSABLE_BODY = "There was an error parsing the body"

_STATUS_TYPES = {400: "invalid_request_error", 401: "authentication_error",
                 403: "permission_error", 404: "not_found_error", 405: "invalid_request_error",
                 409: "conflict_error", 413: "invalid_request_error", 429: "rate_limit_error"}


def _loc_to_param(loc: tuple[Any, ...] | list[Any], *, has_source: bool) -> str | None:
    """('body', 'messages', 0, 'content') -> 'messages.0.content'. FastAPI's locations start with
    the source ('body', 'query', ...), pydantic's do not; union-branch labels ('str',
    'list[...]', 'function-after[...]') are dropped."""
    parts = [str(p) for p in (loc[1:] if has_source else loc)]
    parts = [p for p in parts if not (p.startswith(("function-", "list[", "dict[", "tagged-union["))
                                      or p in ("str", "int", "float", "bool", "list", "dict"))]
    return ".".join(parts) or None


def _validation(errors: list[dict], *, has_source: bool) -> Mapped:
    first = errors[0]
    if first.get("type") == "json_invalid":
        return Mapped(400, "invalid_request_error",
                      f"body: not valid JSON ({first.get('ctx', {}).get('error', 'decode error')})",
                      None, "invalid_json")
    param = _loc_to_param(first.get("loc", ()), has_source=has_source)
    msg = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    if first.get("type") == "extra_forbidden":
        msg = "unknown field (this API accepts only the fields it documents)"
    elif first.get("type") == "missing":
        msg = "field required"
    more = f" (and {len(errors) - 1} more error(s))" if len(errors) > 1 else ""
    code = "unknown_field" if first.get("type") == "extra_forbidden" else (
        "missing_field" if first.get("type") == "missing" else "invalid_value")
    return Mapped(400, "invalid_request_error", f"{param or 'body'}: {msg}{more}", param, code)


def map_exception(exc: BaseException) -> Mapped:
    """What `exc` becomes on the wire; pure, so the mapping is unit-tested without a server."""
    if isinstance(exc, ApiError):
        return Mapped(exc.status, exc.type, exc.message, exc.param, exc.code)
    if isinstance(exc, RateLimited):
        # OpenAI's shape: type `requests` or `tokens`, code rate_limit_exceeded, Retry-After
        return Mapped(429, exc.kind, str(exc), None, "rate_limit_exceeded", exc.retry_after_s)
    if isinstance(exc, RequestValidationError | ValidationError):
        return _validation(list(exc.errors()),
                           has_source=isinstance(exc, RequestValidationError))
    if isinstance(exc, StarletteHTTPException) and (exc.status_code, exc.detail) == (
            400, _UNPARSABLE_BODY):
        return Mapped(400, "invalid_request_error", "body: not valid JSON (bytes that are not "
                      "UTF-8, or nested too deeply)", None, "invalid_json")
    if isinstance(exc, StarletteHTTPException):
        kind = _STATUS_TYPES.get(exc.status_code, "server_error" if exc.status_code >= 500
                                 else "invalid_request_error")
        return Mapped(exc.status_code, kind, str(exc.detail), None, None)
    if isinstance(exc, DataValidationError):
        return Mapped(400, "invalid_request_error", str(exc), exc.field, "invalid_value")
    for cls, status, kind, code in _TABLE:
        if isinstance(exc, cls):
            return Mapped(status, kind, f"{code.replace('_', ' ')}: {exc}", None, code,
                          getattr(exc, "retry_after_s", None))
    return Mapped(500, "server_error", "internal server error (see the server log)", None,
                  "internal_error")


def error_body(mapped: Mapped) -> dict[str, Any]:
    return {"error": {"message": mapped.message, "type": mapped.type, "param": mapped.param,
                      "code": mapped.code}}


def _response(request: Request, exc: BaseException) -> JSONResponse:
    mapped = map_exception(exc)
    if isinstance(exc, StarletteHTTPException) and exc.status_code in (404, 405):
        mapped = replace(mapped, message=f"{exc.detail}: {request.method} {request.url.path}")
    route = request.scope.get("route")
    where = getattr(route, "path", request.url.path)
    if mapped.status >= 500:
        # exc_info for the operator; the message never includes the request body or headers.
        log.error("%s %s -> %d %s", request.method, where, mapped.status, mapped.code,
                  exc_info=mapped.code == "internal_error")
    else:
        log.info("%s %s -> %d %s (param %s)", request.method, where, mapped.status, mapped.code,
                 mapped.param)
    headers = {"WWW-Authenticate": "Bearer"} if mapped.status == 401 else {}
    if mapped.retry_after_s is not None:
        headers["Retry-After"] = str(max(1, math.ceil(mapped.retry_after_s)))
    return JSONResponse(error_body(mapped), status_code=mapped.status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Route every exception raised under `app` through `map_exception`."""

    async def handle(request: Request, exc: Exception) -> JSONResponse:
        return _response(request, exc)

    # Known classes are handled where they are raised; only the `Exception` fallback runs in
    # Starlette's outermost middleware, which also re-raises (so the server logs the traceback).
    known = (ApiError, RateLimited, RequestValidationError, ValidationError,
             StarletteHTTPException, HydraError,
             *(cls for cls, *_ in _TABLE))
    for cls in (*known, Exception):
        app.add_exception_handler(cls, handle)
