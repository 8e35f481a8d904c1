"""Property-based fuzzing of the HTTP API against the real app in this process
(tests/hydra_parts.py): request bodies generated from the app's own OpenAPI schema, each either
well-formed or with one mutation (a value replaced by arbitrary JSON, a field dropped, an unknown
field added), raw bytes, and random Authorization headers.

Properties: never a 5xx; every 4xx is the OpenAI error shape with a message that names the field
it is about (`param`) or the body; every 200 answers for the user asked about; a history append is
stored exactly when it is acknowledged.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hydra_parts import KEYS, TRAINED_USERS, running_api
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hydralm.pipeline import METHODS
from hydralm.tasks import get_task

FUZZ = settings(max_examples=100, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])

LABELS = list(get_task("synth-tag").labels)
USERS = [*TRAINED_USERS, "zed", "b:new"]
BAD_USERS = ["../x", "a/b", "a\x00b", "", ".hidden", "x" * 300, "\u00e9t\u00e9", "a b"]
# Every code point, lone surrogates included: JSON's \uD800 escapes can carry them.
any_text = st.text(st.characters(exclude_categories=()), max_size=20)
scalars = (st.none() | st.booleans() | st.integers()
           | st.floats(allow_nan=False, allow_infinity=False) | any_text)
any_json = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                        | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)
prose = st.lists(st.sampled_from(["robots", "paris", "garden", "ghost", "war", "love", "a"]),
                 min_size=1, max_size=8).map(" ".join) | any_text.filter(bool)
items = st.fixed_dictionaries(
    {"id": st.text("abcxyz0123456789-", min_size=1, max_size=6), "description": prose,
     "tag": st.sampled_from(LABELS)}, optional={"date": st.text(max_size=10)})
message = st.fixed_dictionaries({"role": st.sampled_from(["system", "user", "assistant"]),
                                 "content": prose | st.lists(st.fixed_dictionaries(
                                     {"type": st.just("text"), "text": prose}), max_size=2)})
# Well-formed values by field name, where the schema alone allows anything (dicts, strings).
HINTS: dict[str, st.SearchStrategy] = {
    "user": st.sampled_from(USERS),
    "model": st.sampled_from(["hydralm", "hydralm:hydra", "hydralm:zero_shot",
                              "hydralm:rag_bm25", "hydralm:hydra_adapter"]),
    "method": st.sampled_from(sorted(METHODS)),
    "items": st.lists(items, min_size=1, max_size=4, unique_by=lambda i: i["id"]),
    "item_ids": st.lists(st.sampled_from(["a1", "a2", "b1"]), min_size=1, max_size=3),
    "candidates": st.lists(st.sampled_from(LABELS) | prose, min_size=1, max_size=6),
    "stream": st.just(False),
    "messages": st.tuples(st.lists(message, max_size=2), prose).map(
        lambda pair: [*pair[0], {"role": "user", "content": pair[1]}]),
}


def valid(schema: dict, defs: dict[str, dict], name: str = "") -> st.SearchStrategy:
    """Well-formed values of a (pydantic-made) JSON schema; bounds kept loose (n up to 20)."""
    if name in HINTS:
        return HINTS[name]
    if "$ref" in schema:
        ref = schema["$ref"].rsplit("/", 1)[-1]
        return st.deferred(lambda: valid(defs[ref], defs, name))
    if "anyOf" in schema:
        return st.one_of([valid(s, defs, name) for s in schema["anyOf"]])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "object":
        props = schema.get("properties", {})
        # `user` is optional only for a key bound to one user; rerank takes items OR item_ids.
        required = set(schema.get("required", [])) | ({"user"} & set(props))
        if {"items", "item_ids"} <= set(props):
            required.add("items")
            props = {k: v for k, v in props.items() if k != "item_ids"}
        return st.fixed_dictionaries(
            {k: valid(v, defs, k) for k, v in props.items() if k in required},
            optional={k: valid(v, defs, k) for k, v in props.items() if k not in required})
    if kind == "array":
        return st.lists(valid(schema.get("items", {}), defs, name), min_size=1, max_size=3)
    if kind == "integer":
        low = int(schema.get("minimum", 0))
        return st.integers(low, max(low, min(int(schema.get("maximum", 20)), 20)))
    return {"string": prose, "boolean": st.booleans(), "null": st.none()}.get(kind, any_json)


def _slots(value: Any, out: list) -> list:
    """Every (container, key) inside `value`, where a mutation can land."""
    pairs = value.items() if isinstance(value, dict) else enumerate(value) \
        if isinstance(value, list) else ()
    for key, child in pairs:
        out.append((value, key))
        _slots(child, out)
    return out


@st.composite
def bodies(draw, schema: dict, defs: dict[str, dict]) -> Any:
    """A well-formed body, or one with a single mutation: half of each."""
    body = draw(valid(schema, defs))
    how = draw(st.sampled_from(["none", "none", "none", "replace", "replace", "drop", "extra",
                                "bad user", "swap source", "root"]))
    slots = _slots(body, [])
    if how == "root" or not slots:
        return draw(any_json) if how != "none" else body
    container, key = draw(st.sampled_from(slots))
    if how == "replace":
        container[key] = draw(any_json)
    elif how == "drop" and isinstance(container, dict):
        del container[key]
    elif how == "extra":
        target = container if isinstance(container, dict) else body
        target[draw(st.text(min_size=1, max_size=8))] = draw(any_json)
    elif how == "swap source" and isinstance(body, dict) and "items" in body:
        body["item_ids"] = draw(HINTS["item_ids"])
        if draw(st.booleans()):
            del body["items"]
    elif how == "bad user" and isinstance(body, dict) and "user" in schema.get("properties", {}):
        body["user"] = draw(st.sampled_from(BAD_USERS))
    return body


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    with running_api(tmp_path_factory.mktemp("fuzz")) as p:
        yield p


@pytest.fixture(scope="module")
def routes(parts) -> dict[str, st.SearchStrategy]:
    spec = parts.client.app.openapi()
    defs = spec["components"]["schemas"]
    out = {}
    for path, ops in spec["paths"].items():
        body = ops.get("post", {}).get("requestBody", {}).get("content", {})
        if "application/json" in body:
            schema = body["application/json"]["schema"]
            out[path] = bodies(defs[schema["$ref"].rsplit("/", 1)[-1]], defs)
    assert len(out) == 6, f"routes with a JSON body: {sorted(out)}"
    return out


def check_error_or_answer(response, user: Any) -> None:
    status = response.status_code
    assert status < 500, f"{status}: {response.text[:500]}"
    body = response.json()
    if status >= 400:
        error = body["error"]
        assert set(error) == {"message", "type", "param", "code"}, body
        assert error["message"].strip() and error["type"], body
        if error["param"] is not None:      # 'items.0.tag: ...', or '... for user ...'
            assert error["param"].rsplit(".", 1)[-1] in error["message"], error
        elif status == 404:                  # no such route (a user id like '..' in the path)
            assert error["message"].startswith("Not Found: POST"), error
        elif status in (400, 409):
            assert error["message"].startswith("body"), error
    elif isinstance(user, str) and "user" in body:
        assert body["user"] == user


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions", "/v1/personalize",
                                  "/v1/rerank", "/v1/score"])
def test_schema_fuzz_never_5xx_and_4xx_name_the_field(parts, routes, path):
    @FUZZ
    @given(body=routes[path])
    def run(body):
        response = _post_json(parts, path, body)
        check_error_or_answer(response, body.get("user") if isinstance(body, dict) else None)

    run()


def test_history_fuzz_appends_exactly_what_was_acknowledged(parts, routes):
    route = "/v1/users/{user_id}/history"

    @FUZZ
    @given(user=st.sampled_from(USERS + BAD_USERS) | st.text(max_size=12), body=routes[route])
    def run(user, body):
        before = _stored(parts, user)
        response = _post_json(parts, f"/v1/users/{_quote(user)}/history", body)
        check_error_or_answer(response, user)
        after = _stored(parts, user)
        if response.status_code == 200:
            assert len(after) == len(before) + response.json()["appended"]
            assert [i["id"] for i in after[len(before):]] == [i["id"] for i in body["items"]]
        else:
            assert after == before, "a refused append changed the history"

    run()


@FUZZ
@given(raw=st.binary(max_size=200) | any_json.map(lambda v: json.dumps(v).encode()))
def test_raw_bytes_are_a_4xx(parts, raw):
    for path in ("/v1/personalize", "/v1/score", "/v1/users/alice/history"):
        response = parts.client.post(path, content=raw,
                                     headers={"content-type": "application/json"})
        check_error_or_answer(response, None)
        assert 400 <= response.status_code < 500


@pytest.fixture(scope="module")
def keyed(tmp_path_factory):
    with running_api(tmp_path_factory.mktemp("fuzz-keys"), keys=KEYS) as p:
        yield p


@FUZZ
@given(header=st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=60)
       | st.sampled_from([f"Bearer {k}" for k in KEYS]).map(lambda h: h + " ")
       | st.sampled_from([f"bearer {k}x" for k in KEYS]))
def test_random_authorization_headers_are_401_unless_a_real_key(keyed, header):
    response = keyed.client.post("/v1/score", headers={"Authorization": header.encode("latin-1")},
                                 json={"user": "alice", "query": "q", "prompt": "p",
                                       "candidates": ["a"]})
    key_a, key_b = KEYS                  # alice is a user of key_a's tenant only
    expected = {f"Bearer {key_a}": 200, f"Bearer {key_b}": 403}.get(header.strip(), 401)
    assert response.status_code == expected, response.text
    check_error_or_answer(response, "alice")


def _post_json(parts, path: str, body: Any):
    """POST `body` as ASCII JSON, so lone surrogates travel as \\uXXXX escapes."""
    return parts.client.post(path, content=json.dumps(body).encode("ascii"),
                             headers={"content-type": "application/json"})


def _stored(parts, user: str) -> list[dict]:
    try:
        return parts.history.get(user)
    except ValueError:                   # ids the store refuses can never have history
        return []


def _quote(user: str) -> str:
    from urllib.parse import quote

    return quote(user, safe="")
