"""The serving app end to end on a local Ray: `build_app` deployed next to the embedded SmolLM2,
a tiny registry (MiniLM bases, random heads for two users), API keys on, and the real `openai`
client. Covers the routes, history durability across replica restarts, every route's bad input,
and key scoping."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from serving_helpers import (
    TRAINED_USERS,
    build_tiny_registry,
    kill_replica,
    replica_names,
    wait_until,
)

from serving.auth import hash_key

pytestmark = pytest.mark.integration

APP = "hydralm"
KEYS = {"key-a": {"tenant": "a", "users": ["alice"]},
        "key-b": {"tenant": "b", "users": ["bob"], "user_prefixes": ["b:"]}}
A = {"Authorization": "Bearer key-a"}
B = {"Authorization": "Bearer key-b"}
HISTORY = [
    {"id": f"h{i}", "description": text, "tag": tag} for i, (text, tag) in enumerate([
        ("a crew of robots crosses the galaxy in a starship", "sci-fi"),
        ("two strangers fall in love in paris", "romance"),
        ("a detective hunts a killer in the fog", "thriller"),
        ("a family moves into a haunted house", "horror"),
        ("a boxer trains for the fight of his life", "action"),
        ("an alien lands on a farm and befriends a boy", "sci-fi"),
        ("a wedding goes hilariously wrong", "comedy"),
        ("a novel about a whale becomes a film", "based on a book"),
        ("soldiers defend a bridge in the war", "action"),
        ("a robot learns to paint portraits", "sci-fi"),
        ("a chef opens a restaurant in rome", "comedy"),
        ("a time traveller fixes the past", "sci-fi")])]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("serving")


@pytest.fixture(scope="module")
def api(serve_http_port, llm_base_url, root):
    """The hydralm app on this session's Serve instance; deleted at the end of the module."""
    from ray import serve

    from serving.app import build_app

    keys_file = root / "keys.json"
    keys_file.write_text(json.dumps({hash_key(k): v for k, v in KEYS.items()}))
    args = {
        "task": "synth-tag",
        "registry": str(build_tiny_registry(root / "registry")),
        "history_path": str(root / "history.db"),
        "generator": {"backend": "openai", "base_url": llm_base_url, "model": "smollm2",
                      "max_tokens": 16, "timeout_s": 120},
        "n_candidates": 4,
        "scorer": {"num_cpus": 0.5, "num_buckets": 4, "poll_interval_s": 1.0},
        "ingress": {"num_cpus": 0},
        "auth": {"keys_file": str(keys_file)},
    }
    start = time.monotonic()
    serve.run(build_app(args), name=APP, route_prefix="/")
    base = f"http://127.0.0.1:{serve_http_port}"
    with httpx.Client(base_url=base, timeout=180) as client:
        r = client.post("/v1/users/alice/history", json={"items": HISTORY}, headers=A)
        assert r.status_code == 200, r.text
        print(f"hydralm app deployed in {time.monotonic() - start:.1f} s")
        yield client
    serve.delete(APP)


def test_health_and_readiness(api):
    assert api.get("/healthz").json() == {"status": "ok"}
    r = api.get("/readyz")
    assert r.status_code == 200 and r.json()["checks"] == {"generator": "ok", "scorer": "ok"}


def test_openai_client_end_to_end(api):
    from openai import OpenAI

    oa = OpenAI(base_url=f"{api.base_url}/v1", api_key="key-a", max_retries=0, timeout=180)
    assert "hydralm" in [m.id for m in oa.models.list()]
    out = oa.chat.completions.create(model="hydralm", messages=[
        {"role": "user", "content": "Which tag shall we apply to this movie: robots explore a "
                                    "distant galaxy"}])  # no `user`: key-a acts for alice only
    answer = out.choices[0].message.content
    assert answer in _labels()  # the task constrains candidates to its tag set
    hydra = out.model_extra["hydra"]
    assert (hydra["user"], hydra["method"], hydra["head"]) == ("alice", "hydra", "user")
    assert len(hydra["adapter_scores"]) == 4 and len(hydra["prompt_item_ids"]) == 4
    done = oa.completions.create(model="hydralm:zero_shot", prompt="a ghost story", user="alice")
    assert done.choices[0].text in _labels()
    assert done.model_extra["hydra"]["head"] == "none"


def _labels() -> set[str]:
    from hydralm.tasks import get_task

    return set(get_task("synth-tag").labels)


def test_personalize_explains_the_answer(api):
    r = api.post("/v1/personalize", headers=A, json={
        "user": "alice", "input": "Which tag shall we apply to this movie: robots in a galaxy"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["head"] == "user" and body["heads"] == {"reranker": "user", "adapter": "user"}
    assert len(body["retrieved_ids"]) == 10 and set(body["retrieved_ids"]) <= {
        h["id"] for h in HISTORY}
    assert len(body["rerank_scores"]) == 10 and all(0 <= s <= 1 for s in body["rerank_scores"])
    assert len(body["prompt_item_ids"]) == 4
    assert set(body["prompt_item_ids"]) <= set(body["retrieved_ids"])
    by_id = {h["id"]: h for h in HISTORY}
    assert all(by_id[i]["description"] in body["prompt"] for i in body["prompt_item_ids"])
    # the prompt holds the 4 best-reranked items
    order = sorted(range(10), key=lambda i: (-body["rerank_scores"][i], i))
    assert body["prompt_item_ids"] == [body["retrieved_ids"][i] for i in order[:4]]
    scores = [c["score"] for c in body["candidates"]]
    assert len(scores) == 4 and body["answer"] == body["candidates"][scores.index(max(scores))][
        "text"]
    assert {"retrieve_ms", "rerank_ms", "generate_ms", "adapter_ms", "total_ms"} <= set(
        body["timings_ms"])


def test_unseen_user_gets_the_global_head(api):
    r = api.post("/v1/personalize", headers=B, json={"user": "b:newcomer", "input": "a film"})
    assert r.status_code == 200 and r.json()["head"] == "global"
    assert r.json()["retrieved_ids"] == []


def test_rerank_and_score_use_the_users_own_head(api):
    query = {"query": "robots in space", "items": HISTORY[:5]}
    own = api.post("/v1/rerank", headers=A, json={"user": "alice", **query}).json()
    again = api.post("/v1/rerank", headers=A, json={"user": "alice", **query}).json()
    other = api.post("/v1/rerank", headers=B, json={"user": "bob", **query}).json()
    fallback = api.post("/v1/rerank", headers=B, json={"user": "b:x", **query}).json()
    assert own["head"] == other["head"] == "user" and fallback["head"] == "global"
    assert own["scores"] == again["scores"]  # deterministic at inference
    # Same pairs, different users: different heads, different scores.
    assert own["scores"] != other["scores"] and own["scores"] != fallback["scores"]
    by_id = api.post("/v1/rerank", headers=A, json={"user": "alice", "query": "robots in space",
                                                     "item_ids": ["h0", "h1", "h2", "h3", "h4"]})
    assert by_id.json()["scores"] == pytest.approx(own["scores"])
    r = api.post("/v1/score", headers=A, json={"user": "alice", "query": "robots",
                                               "prompt": "tag this: robots",
                                               "candidates": ["sci-fi", "comedy", "romance"]})
    assert r.status_code == 200 and len(r.json()["scores"]) == 3
    assert r.json()["best"] == max(range(3), key=lambda i: (r.json()["scores"][i], -i))
    assert set(TRAINED_USERS) == {"alice", "bob"}


def test_a_newly_fitted_head_is_picked_up_without_a_restart(api, root):
    from hydralm.artifacts import Registry
    from hydralm.scoring import random_heads

    body = {"user": "b:late", "query": "robots", "items": HISTORY[:3]}
    assert api.post("/v1/rerank", headers=B, json=body).json()["head"] == "global"
    registry = Registry(str(root / "registry"))
    registry.save_head("reranker", "b:late", random_heads(1, 384, seed=7)[0], registry.base_version())
    wait_until(lambda: api.post("/v1/rerank", headers=B, json=body).json()["head"] == "user",
               timeout_s=60, what="the Scorer to serve the new head")


def test_history_append_is_used_and_survives_replica_restarts(api, ray_local):
    item = {"id": "fresh-1", "description": "zeppelins duel above volcanic glaciers",
            "tag": "action"}
    r = api.post("/v1/users/alice/history", headers=A, json={"items": [item]})
    assert r.status_code == 200 and r.json()["durable"] is True
    assert r.json()["history_length"] == len(HISTORY) + 1
    r = api.post("/v1/personalize", headers=A, json={
        "user": "alice", "input": "zeppelins over glaciers", "method": "rag_bm25"})
    assert r.json()["retrieved_ids"][0] == "fresh-1"
    for deployment in ("Scorer", "HydraIngress"):
        before = replica_names(APP, deployment)
        kill_replica(before[0])
        wait_until(lambda d=deployment, b=before: _replaced(d, b) and _answers(api),
                   timeout_s=90, what=f"a new {deployment} replica")
        r = api.post("/v1/rerank", headers=A, json={"user": "alice", "query": "zeppelins",
                                                    "item_ids": ["fresh-1"]})
        assert r.status_code == 200, r.text
    r = api.post("/v1/users/alice/history", headers=A, json={"items": [item]})
    assert r.status_code == 200 and r.json()["history_length"] == len(HISTORY) + 1  # still there
    r = api.post("/v1/users/alice/history", headers=A, json={"items": [{**item, "tag": "drama"}]})
    assert r.status_code == 409  # the same id with other content


def _replaced(deployment: str, before: list[str]) -> bool:
    now = replica_names(APP, deployment)
    return bool(now) and not set(now) & set(before)


def _answers(api) -> bool:
    try:
        return api.get("/readyz", timeout=10).status_code == 200
    except httpx.HTTPError:
        return False


CHAT = {"model": "hydralm", "user": "alice", "messages": [{"role": "user", "content": "x"}]}
BAD = [
    ("/v1/chat/completions", {k: v for k, v in CHAT.items() if k != "messages"}, 400, "messages"),
    ("/v1/chat/completions", {**CHAT, "messages": []}, 400, "messages"),
    ("/v1/chat/completions", {**CHAT, "user": 42}, 400, "user"),
    ("/v1/chat/completions", {**CHAT, "user": "../x"}, 400, "user"),
    ("/v1/chat/completions", {**CHAT, "user": "a\x00b"}, 400, "user"),
    ("/v1/chat/completions", {**CHAT, "n": 1000}, 400, "n"),
    ("/v1/chat/completions", {**CHAT, "n": 17}, 400, "n"),
    ("/v1/chat/completions", {**CHAT, "stream": "yes"}, 400, "stream"),
    ("/v1/chat/completions", {**CHAT, "logit_bias": {"50256": -100}}, 400, "logit_bias"),
    ("/v1/chat/completions", {**CHAT, "temprature": 0.5}, 400, "temprature"),
    ("/v1/chat/completions", {**CHAT, "model": "gpt-4o"}, 404, "model"),
    ("/v1/completions", {"model": "hydralm", "user": "alice", "prompt": ["a", "b"]}, 400,
     "prompt"),
    ("/v1/completions", {"model": "hydralm", "user": "alice", "prompt": "p", "max_tokens": -1},
     400, "max_tokens"),
    ("/v1/personalize", {"user": "alice"}, 400, "input"),
    ("/v1/personalize", {"user": "alice", "input": "x", "method": "oracle"}, 400, "method"),
    ("/v1/personalize", {"user": "alice", "input": ["x"]}, 400, "input"),
    ("/v1/rerank", {"user": "alice", "query": "x", "items": []}, 400, "items"),
    ("/v1/rerank", {"user": "alice", "query": "x", "item_ids": ["missing"]}, 404, "item_ids.0"),
    ("/v1/rerank", {"user": "alice", "query": "x", "items": [{"id": "1", "tag": 3,
                                                               "description": "d"}]}, 400,
     "items.0.tag"),
    ("/v1/score", {"user": "alice", "query": "q", "prompt": "p", "candidates": []}, 400,
     "candidates"),
    ("/v1/score", {"user": "alice", "query": "q", "prompt": "p", "candidates": ["a"], "x": 1}, 400,
     "x"),
    ("/v1/users/..%2Fx/history", {"items": [HISTORY[0]]}, 400, "user_id"),
    ("/v1/users/a%00b/history", {"items": [HISTORY[0]]}, 400, "user_id"),
    ("/v1/users/alice/history", {"items": [{"id": "z", "description": "d"}]}, 400,
     "items.0.tag"),
    ("/v1/users/alice/history", {"items": [{**HISTORY[0], "id": "z", "evil": "1"}]}, 400,
     "items.0.evil"),
]


@pytest.mark.parametrize("path, body, status, param", BAD)
def test_bad_input_is_a_4xx_naming_the_field(api, path, body, status, param):
    r = api.post(path, json=body, headers=A)
    assert r.status_code == status, r.text
    assert r.json()["error"]["param"] == param


def test_malformed_and_oversized_bodies(api):
    r = api.post("/v1/score", content=b"{not json", headers={**A, "content-type":
                                                              "application/json"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
    r = api.post("/v1/score", headers=A, json={"user": "alice", "query": "q",
                                               "prompt": "p" * (2 << 20), "candidates": ["a"]})
    assert r.status_code == 413


ROUTES = [
    ("/v1/chat/completions", lambda u: {**CHAT, "user": u}),
    ("/v1/completions", lambda u: {"model": "hydralm", "user": u, "prompt": "x"}),
    ("/v1/personalize", lambda u: {"user": u, "input": "x"}),
    ("/v1/rerank", lambda u: {"user": u, "query": "x", "items": HISTORY[:1]}),
    ("/v1/score", lambda u: {"user": u, "query": "q", "prompt": "p", "candidates": ["a"]}),
]


@pytest.mark.parametrize("path, body", ROUTES)
def test_a_key_cannot_act_for_another_keys_users(api, path, body):
    for user, headers in [("alice", B), ("bob", A), ("b:someone", A)]:
        r = api.post(path, json=body(user), headers=headers)
        assert r.status_code == 403 and r.json()["error"]["param"] == "user", r.text
    assert api.post(path, json=body("alice")).status_code == 401
    assert api.post(path, json=body("alice"),
                    headers={"Authorization": "Bearer nope"}).status_code == 401


def test_history_is_guarded_by_the_key(api):
    item = {"items": [{"id": "guarded", "description": "d", "tag": "comedy"}]}
    assert api.post("/v1/users/alice/history", json=item, headers=B).status_code == 403
    assert api.post("/v1/users/bob/history", json=item, headers=A).status_code == 403
    assert api.post("/v1/users/alice/history", json=item).status_code == 401
