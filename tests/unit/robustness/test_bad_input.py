"""Bad input, by table, against the real app in this process (tests/hydra_parts.py): sizes, deep
nesting, bytes that are not UTF-8, lone surrogates, path-like user ids, out-of-range numbers,
empty and huge histories, unknown tasks, models and methods. Each is a 4xx naming the field (or
the body), never a 5xx; the test_fuzz_api.py properties cover what the tables do not list."""

from __future__ import annotations

import json
import time

import pytest
from hydra_parts import running_api

from hydralm.errors import UnknownTaskError
from hydralm.tasks import get_task
from serving.config import ServeArgs

BASE = {
    "/v1/chat/completions": {"model": "hydralm", "user": "alice",
                             "messages": [{"role": "user", "content": "robots"}]},
    "/v1/completions": {"model": "hydralm", "user": "alice", "prompt": "robots"},
    "/v1/personalize": {"user": "alice", "input": "robots"},
    "/v1/rerank": {"user": "alice", "query": "robots", "item_ids": ["a1"]},
    "/v1/score": {"user": "alice", "query": "q", "prompt": "p", "candidates": ["a"]},
}
HISTORY = "/v1/users/alice/history"
ITEM = {"id": "new", "description": "d", "tag": "comedy"}
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    with running_api(tmp_path_factory.mktemp("bad-input")) as p:
        yield p


def assert_4xx(response, status: int, param: str | None, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["param"] == param, error
    assert (param.rsplit(".", 1)[-1] if param else "body") in error["message"], error
    if code is not None:
        assert error["code"] == code, error
    return error


def test_each_baseline_body_is_good(parts):
    for path, body in BASE.items():
        assert parts.client.post(path, json=body).status_code == 200, path


NUMBERS = [
    (path, field, value)
    for path, fields in [("/v1/chat/completions", ("n", "max_tokens", "max_completion_tokens")),
                         ("/v1/completions", ("n", "max_tokens")),
                         ("/v1/personalize", ("n_candidates", "max_tokens"))]
    for field in fields
    for value in (-1, 0, 2**63, 10**30, 1.5, "3", True, [1])
] + [("/v1/chat/completions", "n", 17), ("/v1/personalize", "n_candidates", 17),
     ("/v1/chat/completions", "max_tokens", 513), ("/v1/completions", "max_tokens", 10**6)]


@pytest.mark.parametrize("path, field, value", NUMBERS)
def test_out_of_range_numbers_are_400_naming_the_field(parts, path, field, value):
    assert_4xx(parts.client.post(path, json={**BASE[path], field: value}), 400, field)


PATH_LIKE = ["../x", "..", "/etc/passwd", "a/b", "a\\b", "a\x00b", ".hidden", "-x", "x" * 257,
             "", " alice", "alice\n", "\u202ealice", "%2e%2e%2f", "alice\ud800"]


@pytest.mark.parametrize("user", PATH_LIKE, ids=[repr(u)[:20] for u in PATH_LIKE])
@pytest.mark.parametrize("path", list(BASE))
def test_path_like_user_ids_are_400_in_every_body(parts, path, user):
    raw = json.dumps({**BASE[path], "user": user}).encode("ascii")
    assert_4xx(parts.client.post(path, content=raw, headers=JSON), 400, "user")


IN_PATH = [u for u in PATH_LIKE if u not in ("..", "alice\ud800")]  # '..' is a dot segment


@pytest.mark.parametrize("user", IN_PATH, ids=[repr(u)[:20] for u in IN_PATH])
def test_path_like_user_ids_are_400_in_the_history_path(parts, user):
    from urllib.parse import quote

    before = parts.history.users()
    r = parts.client.post(f"/v1/users/{quote(user, safe='')}/history", json={"items": [ITEM]})
    assert_4xx(r, 400, "user_id")          # a newline too (Starlette's `:path` would 404)
    assert parts.history.users() == before


def _nested(depth: int, kind: str) -> str:
    return "[" * depth + "]" * depth if kind == "list" else '{"a":' * depth + "1" + "}" * depth


@pytest.mark.parametrize("kind", ["list", "object"])
@pytest.mark.parametrize("path, field", [(p, "user") for p in BASE] + [(HISTORY, "items")])
def test_json_nested_ten_thousand_deep_is_400(parts, path, field, kind):
    template = json.dumps({**BASE.get(path, {}), field: "@"})
    deep = template.replace('"@"', _nested(10_000, kind))
    assert_4xx(parts.client.post(path, content=deep, headers=JSON), 400, None, "invalid_json")
    shallow = template.replace('"@"', _nested(500, kind))  # parses: then it is the wrong type
    r = parts.client.post(path, content=shallow, headers=JSON)
    assert r.status_code == 400 and r.json()["error"]["param"].startswith(field), r.text


def test_deep_values_inside_history_items_are_400(parts):
    item = json.dumps({"id": "deep", "tag": "comedy", "description": "@"})
    body = json.dumps({"items": ["@"]}).replace('"@"', item).replace('"@"', _nested(500, "list"))
    r = parts.client.post(HISTORY, content=body, headers=JSON)
    assert_4xx(r, 400, "items.0.description")


NOT_UTF8 = [b"\xff", b"\xc0\xaf", b"\xe2\x82", b"\xf8\x88\x80\x80\x80"]
CESU_SURROGATE = b"\xed\xa0\x80"   # json.loads decodes it (surrogatepass): a lone surrogate


@pytest.mark.parametrize("bad", [*NOT_UTF8, CESU_SURROGATE],
                         ids=[b.hex() for b in [*NOT_UTF8, CESU_SURROGATE]])
@pytest.mark.parametrize("path", [*BASE, HISTORY])
def test_bytes_that_are_not_utf8_are_400(parts, path, bad):
    body = BASE.get(path, {"items": [ITEM]})
    raw = json.dumps(body).encode().replace(b"alice", b"al" + bad + b"ice", 1).replace(
        b'"d"', b'"d' + bad + b'"')
    assert raw != json.dumps(body).encode()
    r = parts.client.post(path, content=raw, headers=JSON)
    if bad == CESU_SURROGATE:
        assert_4xx(r, 400, "user" if path in BASE else "items.0.description")
    else:
        assert_4xx(r, 400, None, "invalid_json")


SURROGATES = [
    ("/v1/chat/completions", "messages.0.content",
     {**BASE["/v1/chat/completions"], "messages": [{"role": "user", "content": "x\ud800"}]}),
    # a str-or-parts union: the error names the content (its str branch is reported first)
    ("/v1/chat/completions", "messages.0.content",
     {**BASE["/v1/chat/completions"], "messages": [
         {"role": "user", "content": [{"type": "text", "text": "\udfff"}]}]}),
    ("/v1/completions", "prompt", {**BASE["/v1/completions"], "prompt": "\ud800"}),
    ("/v1/completions", "model", {**BASE["/v1/completions"], "model": "hydralm\ud800"}),
    ("/v1/personalize", "input", {**BASE["/v1/personalize"], "input": "a\ud800"}),
    ("/v1/personalize", "method", {**BASE["/v1/personalize"], "method": "\ud800"}),
    ("/v1/rerank", "query", {**BASE["/v1/rerank"], "query": "\ud800"}),
    ("/v1/rerank", "item_ids.0", {**BASE["/v1/rerank"], "item_ids": ["\ud800"]}),
    ("/v1/rerank", "items.0.description", {"user": "alice", "query": "q", "items": [
        {**ITEM, "description": "\ud800"}]}),
    ("/v1/score", "candidates.0", {**BASE["/v1/score"], "candidates": ["\ud800"]}),
    (HISTORY, "items.0.description", {"items": [{**ITEM, "description": "x\ud800"}]}),
    (HISTORY, "items.0.id", {"items": [{**ITEM, "id": "\udc00"}]}),
]


@pytest.mark.parametrize("path, param, body", SURROGATES,
                         ids=[f"{s[1]}-{i}" for i, s in enumerate(SURROGATES)])
def test_lone_surrogates_are_400_naming_the_field(parts, path, param, body):
    raw = json.dumps(body).encode("ascii")          # "\ud800" travels as a JSON escape
    error = assert_4xx(parts.client.post(path, content=raw, headers=JSON), 400, param)
    assert "unicode" in error["message"].lower() or "valid string" in error["message"]


def test_oversized_bodies_are_413_declared_or_streamed(parts):
    big = {**BASE["/v1/personalize"], "input": "x" * (1 << 20)}
    assert_4xx(parts.client.post("/v1/personalize", json=big), 413, None, "request_too_large")

    def chunks():
        yield b'{"user": "alice", "input": "'
        for _ in range(1100):
            yield b"x" * 1024
        yield b'"}'
    r = parts.client.post("/v1/personalize", content=chunks(), headers=JSON)
    assert_4xx(r, 413, None, "request_too_large")


@pytest.mark.parametrize("path, body, param", [
    ("/v1/personalize", {**BASE["/v1/personalize"], "input": "x" * 16_385}, "input"),
    ("/v1/score", {**BASE["/v1/score"], "candidates": ["c"] * 65}, "candidates"),
    ("/v1/score", {**BASE["/v1/score"], "candidates": ["a", "y" * 16_385]}, "candidates.1"),
    ("/v1/rerank", {"user": "alice", "query": "q",
                    "items": [{**ITEM, "id": str(i)} for i in range(101)]}, "items"),
    ("/v1/rerank", {**BASE["/v1/rerank"], "item_ids": ["a1"] * 101}, "item_ids"),
    ("/v1/chat/completions", {**BASE["/v1/chat/completions"], "messages": [
        {"role": "user", "content": "m"}] * 1025}, "messages"),
    (HISTORY, {"items": [{**ITEM, "id": str(i)} for i in range(101)]}, "items"),
    (HISTORY, {"items": [{**ITEM, "description": "z" * 16_385}]}, "items.0.description"),
    (HISTORY, {"items": []}, "items"),
    (HISTORY, {"items": [ITEM, ITEM]}, "items.1.id"),
])
def test_too_many_or_too_long_is_400_naming_the_field(parts, path, body, param):
    assert_4xx(parts.client.post(path, json=body), 400, param)


def test_a_user_without_history_is_served(parts):
    r = parts.client.post("/v1/personalize", json={"user": "b:empty", "input": "robots"})
    assert r.status_code == 200 and r.json()["retrieved_ids"] == []
    assert r.json()["head"] == "global"
    r = parts.client.post("/v1/rerank", json={"user": "b:empty", "query": "q",
                                              "item_ids": ["a1"]})
    assert_4xx(r, 404, "item_ids.0", "item_not_found")   # alice's item is not b:empty's


def test_a_huge_history_is_served_in_bounded_time(parts):
    labels = get_task("synth-tag").labels
    items = [{"id": f"h{i}", "description": f"story {i} about robots number {i % 97}",
              "tag": labels[i % len(labels)]} for i in range(20_000)]
    parts.history.append("a:huge", items)
    start = time.monotonic()
    r = parts.client.post("/v1/personalize", json={"user": "a:huge", "input": "robots 42"})
    assert r.status_code == 200, r.text
    assert len(r.json()["retrieved_ids"]) == 10 and len(r.json()["prompt_item_ids"]) == 4
    assert time.monotonic() - start < 30
    r = parts.client.post("/v1/rerank", json={"user": "a:huge", "query": "robots",
                                              "item_ids": [f"h{i}" for i in range(100)]})
    assert r.status_code == 200 and len(r.json()["scores"]) == 100
    r = parts.client.post("/v1/users/a:huge/history", json={"items": [{**ITEM, "id": "h7"}]})
    assert_4xx(r, 409, "items.0.id", "duplicate_item")


@pytest.mark.parametrize("path, body, status, param", [
    ("/v1/chat/completions", {**BASE["/v1/chat/completions"], "model": "hydralm:oracle"}, 404,
     "model"),
    ("/v1/completions", {**BASE["/v1/completions"], "model": "LaMP-99"}, 404, "model"),
    ("/v1/personalize", {**BASE["/v1/personalize"], "method": "LaMP-99"}, 400, "method"),
    ("/v1/personalize", {**BASE["/v1/personalize"], "task": "LaMP-2M"}, 400, "task"),
])
def test_unknown_models_methods_and_a_task_field_are_4xx(parts, path, body, status, param):
    assert_4xx(parts.client.post(path, json=body), status, param)


def test_an_unknown_task_fails_the_config_and_the_registry():
    with pytest.raises(ValueError, match="unknown task 'LaMP-99'.*LaMP-2M"):
        ServeArgs.from_dict({"task": "LaMP-99"}, source="test")
    with pytest.raises(UnknownTaskError, match="LaMP-99"):
        get_task("LaMP-99")
