"""The one exception -> HTTP mapping: status, OpenAI error type, code and param."""

from __future__ import annotations

import asyncio

import pytest
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.testclient import TestClient
from ray.exceptions import RayActorError
from ray.serve.exceptions import BackPressureError

from hydralm.errors import ArtifactError, DataValidationError, GeneratorError, NotFoundError
from hydralm.generator import (
    GeneratorBadResponse,
    GeneratorRequestRejected,
    GeneratorTimeout,
    GeneratorUnavailable,
)
from serving.errors import (
    AuthenticationFailed,
    Conflict,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    ServiceUnavailable,
    error_body,
    install_error_handlers,
    map_exception,
)


def _gen(cls):
    return cls("boom", attempts=3, last_status=503, url="http://127.0.0.1:1/v1/chat/completions")


@pytest.mark.parametrize("exc, status, kind, code", [
    (InvalidRequest("n: too big", param="n"), 400, "invalid_request_error", "invalid_value"),
    (AuthenticationFailed("bad key"), 401, "authentication_error", "invalid_api_key"),
    (PermissionDenied("no"), 403, "permission_error", "user_not_allowed"),
    (NotFound("gone"), 404, "not_found_error", "not_found"),
    (Conflict("dup"), 409, "conflict_error", "conflict"),
    (PayloadTooLarge("big"), 413, "invalid_request_error", "request_too_large"),
    (ServiceUnavailable("down"), 503, "service_unavailable_error", "service_unavailable"),
    (_gen(GeneratorTimeout), 504, "server_error", "generator_timeout"),
    (_gen(GeneratorUnavailable), 503, "service_unavailable_error", "generator_unavailable"),
    (_gen(GeneratorBadResponse), 502, "server_error", "generator_bad_response"),
    (_gen(GeneratorRequestRejected), 502, "server_error", "generator_rejected_request"),
    (GeneratorError("x"), 503, "service_unavailable_error", "generator_unavailable"),
    (NotFoundError("no head"), 404, "not_found_error", "not_found"),
    (ArtifactError("torn"), 500, "server_error", "artifact_error"),
    (BackPressureError(num_queued_requests=3, max_queued_requests=2), 503,
     "service_unavailable_error", "overloaded"),
    (RayActorError(), 503, "service_unavailable_error", "replica_unavailable"),
    (asyncio.TimeoutError(), 504, "server_error", "timeout"),
    (KeyError("secret-history-text"), 500, "server_error", "internal_error"),
])
def test_mapping_table(exc, status, kind, code):
    mapped = map_exception(exc)
    assert (mapped.status, mapped.type, mapped.code) == (status, kind, code)


def test_unexpected_errors_leak_nothing():
    mapped = map_exception(RuntimeError("user alice wrote: my secret diary"))
    assert "secret" not in mapped.message and mapped.status == 500


def test_data_validation_names_the_field():
    mapped = map_exception(DataValidationError("must be a string", field="items.0.tag"))
    assert (mapped.status, mapped.param) == (400, "items.0.tag")


@pytest.mark.parametrize("errors, param, code", [
    ([{"type": "missing", "loc": ("body", "messages"), "msg": "Field required"}],
     "messages", "missing_field"),
    ([{"type": "extra_forbidden", "loc": ("body", "top_p"), "msg": "Extra inputs"}],
     "top_p", "unknown_field"),
    ([{"type": "string_type", "loc": ("body", "messages", 0, "content", "str"), "msg": "x"},
      {"type": "list_type", "loc": ("body", "messages", 0, "content", "list[TextPart]"),
       "msg": "y"}], "messages.0.content", "invalid_value"),
    ([{"type": "int_parsing", "loc": ("body", "query"), "msg": "x"}], "query", "invalid_value"),
    ([{"type": "json_invalid", "loc": ("body", 12), "msg": "JSON decode error",
       "ctx": {"error": "Expecting value"}}], None, "invalid_json"),
])
def test_request_validation_names_the_field(errors, param, code):
    mapped = map_exception(RequestValidationError(errors))
    assert (mapped.status, mapped.param, mapped.code) == (400, param, code)
    if param:
        assert mapped.message.startswith(param)


def test_error_body_is_openai_shaped():
    body = error_body(map_exception(InvalidRequest("n: too big", param="n")))
    assert body == {"error": {"message": "n: too big", "type": "invalid_request_error",
                              "param": "n", "code": "invalid_value"}}


def test_handlers_answer_every_error_as_json():
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/boom")
    async def boom():
        raise ValueError("internal detail")

    @app.get("/auth")
    async def auth():
        raise AuthenticationFailed("missing API key")

    client = TestClient(app, raise_server_exceptions=False)
    r = client.get("/boom")
    assert r.status_code == 500 and r.json()["error"]["code"] == "internal_error"
    assert "internal detail" not in r.text
    r = client.get("/auth")
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    r = client.post("/auth")
    assert r.status_code == 405 and r.json()["error"]["type"] == "invalid_request_error"
    r = client.get("/missing")
    assert r.status_code == 404 and "/missing" in r.json()["error"]["message"]
