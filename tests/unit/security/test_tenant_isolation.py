"""Tenant isolation on every route, against the real app in this process with API keys on and two
tenants whose users hold private history (tests/hydra_parts.py): a key can neither read, append
to, nor be served with another tenant's users, whatever the route, user-id spelling or body; and
no answer to one tenant ever carries another tenant's history text."""

from __future__ import annotations

import pytest
from hydra_parts import HISTORIES, KEYS, bearer, running_api

KEY_A, KEY_B = list(KEYS)
A_USERS, B_USERS = ["alice", "a:ann"], ["bob", "b:bea", "b:new"]
B_SECRETS = [item["description"] for item in HISTORIES["bob"]]
A_SECRETS = [item["description"] for item in HISTORIES["alice"]]

ROUTES = {
    "chat": ("/v1/chat/completions", lambda u: {
        "model": "hydralm", "user": u, "messages": [{"role": "user", "content": "lighthouses"}]}),
    "completions": ("/v1/completions", lambda u: {"model": "hydralm:rag_bm25", "user": u,
                                                  "prompt": "lighthouses"}),
    "personalize": ("/v1/personalize", lambda u: {"user": u, "input": "haunted lighthouses"}),
    "rerank items": ("/v1/rerank", lambda u: {"user": u, "query": "q", "items": [
        {"id": "x", "description": "lighthouses", "tag": "horror"}]}),
    "rerank stored": ("/v1/rerank", lambda u: {"user": u, "query": "q", "item_ids": ["b1"]}),
    "score": ("/v1/score", lambda u: {"user": u, "query": "q", "prompt": "p",
                                      "candidates": ["horror"]}),
}


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    with running_api(tmp_path_factory.mktemp("tenants"), keys=KEYS) as p:
        yield p


def _no_secret_of(response, secrets: list[str]) -> None:
    assert not any(s in response.text for s in secrets), response.text[:500]


@pytest.mark.parametrize("route", list(ROUTES))
@pytest.mark.parametrize("key, foreign, secrets", [(KEY_A, B_USERS, B_SECRETS),
                                                    (KEY_B, A_USERS, A_SECRETS)],
                         ids=["a-asks-for-b", "b-asks-for-a"])
def test_no_route_serves_another_tenants_user(parts, route, key, foreign, secrets):
    path, body = ROUTES[route]
    for user in foreign:
        r = parts.client.post(path, json=body(user), headers=bearer(key))
        assert r.status_code == 403, r.text
        assert r.json()["error"] == {"message": f"this API key may not act for user {user!r}",
                                     "type": "permission_error", "param": "user",
                                     "code": "user_not_allowed"}
        _no_secret_of(r, secrets)


@pytest.mark.parametrize("key, foreign", [(KEY_A, B_USERS), (KEY_B, A_USERS)])
def test_no_key_appends_to_another_tenants_user(parts, key, foreign):
    for user in foreign:
        before = parts.history.get(user)
        r = parts.client.post(f"/v1/users/{user}/history", headers=bearer(key), json={
            "items": [{"id": "planted", "description": "planted", "tag": "comedy"}]})
        assert r.status_code == 403 and r.json()["error"]["param"] == "user_id", r.text
        assert parts.history.get(user) == before


def test_the_403_comes_before_any_lookup(parts):
    """An item id that exists only in the other tenant's history: 403 for their user (no
    existence oracle), 404 for one's own user, and neither echoes the item."""
    body = ROUTES["rerank stored"][1]
    r = parts.client.post("/v1/rerank", json=body("bob"), headers=bearer(KEY_A))
    assert r.status_code == 403
    r = parts.client.post("/v1/rerank", json=body("alice"), headers=bearer(KEY_A))
    assert r.status_code == 404 and r.json()["error"]["code"] == "item_not_found"
    _no_secret_of(r, B_SECRETS)


@pytest.mark.parametrize("route", list(ROUTES))
def test_own_users_are_served_without_the_other_tenants_history(parts, route):
    path, body = ROUTES[route]
    for key, users, secrets in [(KEY_A, A_USERS, B_SECRETS), (KEY_B, B_USERS, A_SECRETS)]:
        for user in users:
            r = parts.client.post(path, json=body(user), headers=bearer(key))
            only_bobs = route == "rerank stored" and user != "bob"    # item b1 is bob's
            assert r.status_code == (404 if only_bobs else 200), r.text
            _no_secret_of(r, secrets)
            if r.status_code == 200 and "user" in r.json():
                assert r.json()["user"] == user


@pytest.mark.parametrize("user", ["Bob", "bob.", "a:bob", "a:..bob", "a:b:bob", "b", "b:"],
                         ids=lambda u: u)
def test_look_alike_ids_are_other_users_not_bobs(parts, user):
    """Ids that resemble another tenant's user are either refused or a user of one's own
    namespace with its own (empty) history."""
    r = parts.client.post("/v1/personalize", headers=bearer(KEY_A),
                          json={"user": user, "input": "haunted lighthouses"})
    _no_secret_of(r, B_SECRETS)
    if user.startswith("a:"):
        assert r.status_code == 200 and r.json()["retrieved_ids"] == [], r.text
        assert r.json()["head"] == "global"
    else:
        assert r.status_code in (400, 403), r.text


def test_a_key_for_one_user_acts_only_for_it_by_default(parts, tmp_path):
    keys = {"solo-key-000000000000": {"tenant": "s", "users": ["alice"]}}
    with running_api(tmp_path, keys=keys) as solo:
        r = solo.client.post("/v1/personalize", headers=bearer("solo-key-000000000000"),
                             json={"input": "robots"})
        assert r.status_code == 200 and r.json()["user"] == "alice"
        r = solo.client.post("/v1/personalize", headers=bearer("solo-key-000000000000"),
                             json={"input": "robots", "user": "bob"})
        assert r.status_code == 403


@pytest.mark.parametrize("headers", [{}, bearer("nope"), bearer(KEY_A + "x"),
                                     {"Authorization": KEY_A}, {"Authorization": "Basic x"},
                                     {"X-Api-Key": KEY_A}],
                         ids=["none", "unknown", "suffix", "no-scheme", "basic", "other-header"])
def test_without_a_valid_key_every_route_is_401(parts, headers):
    for path, body in ROUTES.values():
        r = parts.client.post(path, json=body("alice"), headers=headers)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", r.text
        _no_secret_of(r, A_SECRETS)
    r = parts.client.post("/v1/users/alice/history", headers=headers, json={"items": []})
    assert r.status_code == 401
    assert parts.client.get("/v1/models", headers=headers).status_code == 401
