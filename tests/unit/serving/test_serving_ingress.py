"""The HTTP routes without Ray: the real FastAPI app, service, auth, history store and task, with
a deterministic scorer and generator standing in for the Scorer deployment and the LLM (the
integration tests run the same routes against the real ones)."""

from __future__ import annotations

import logging

import pytest
from fastapi.testclient import TestClient

from hydralm.generator import GeneratorStats, GeneratorUnavailable, Samples
from hydralm.history import SqliteHistoryStore
from hydralm.pipeline import PairScorer, PairScores
from hydralm.tasks import get_task
from serving.auth import Authenticator, load_key_table, table_from_keys
from serving.config import AuthConfig, RequestLimits
from serving.ingress import create_api
from serving.metrics import ServingMetrics
from serving.service import HydraService, PipelineSettings

TRAINED = {"alice", "bob"}  # users with their own heads; everyone else gets the global head
ITEMS = [{"id": "m1", "description": "a space opera with robots", "tag": "sci-fi"},
         {"id": "m2", "description": "a romantic comedy in paris", "tag": "comedy"}]


class OverlapScorer(PairScorer):
    """Scores a pair by word overlap; longer candidates win ties (deterministic)."""

    async def score(self, kind, user_id, firsts, seconds, *, profile=None,
                    prefer="user"):
        scores = [len(set(f.lower().split()) & set(s.lower().split())) + len(s) / 1000
                  for f, s in zip(firsts, seconds, strict=True)]
        return PairScores(scores, "user" if user_id in TRAINED else "global")


class CannedGenerator:
    """Candidates "comedy", "sci-fi robots", "drama", then "x" (cut: finish_reason length); 10
    prompt tokens per call and one completion token per word."""

    def __init__(self) -> None:
        self.calls: list[dict] = []

    async def chat_samples(self, messages, *, n=1, temperature=0.0, max_tokens=None,
                           choices=None, options=None, seed=None):
        self.calls.append({"messages": messages, "n": n, "max_tokens": max_tokens,
                           "temperature": temperature, "options": options, "seed": seed})
        texts = ["comedy", "sci-fi robots", "drama"][:n] + ["x"] * max(0, n - 3)
        return Samples(texts, ["length" if t == "x" else "stop" for t in texts],
                       prompt_tokens=10, completion_tokens=sum(len(t.split()) for t in texts))

    async def chat_stream(self, messages, *, temperature=0.0, max_tokens=None, choices=None,
                          options=None):
        self.calls.append({"messages": messages, "n": 1, "max_tokens": max_tokens,
                           "temperature": temperature, "options": options, "stream": True})
        for piece in ("sci-fi", " robots"):
            yield piece
        yield Samples(["sci-fi robots"], ["length"], prompt_tokens=7, completion_tokens=2)


class RecordingMetrics(ServingMetrics):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, int]] = []

    def request(self, route, status, latency_ms):
        self.seen.append((route, status))
        super().request(route, status, latency_ms)


def _client(tmp_path, table=None, limits=None):
    history = SqliteHistoryStore(tmp_path / "history.db")
    history.append("alice", ITEMS)
    generator = CannedGenerator()
    service = HydraService(task=get_task("synth-tag"), scorer=OverlapScorer(),
                           generator=generator, history=history, settings=PipelineSettings(),
                           checks={"generator": _ok})
    metrics = RecordingMetrics()
    api = create_api(service, Authenticator(table or {}), limits or RequestLimits(max_n=8),
                     metrics)
    client = TestClient(api, raise_server_exceptions=False)
    client.generator, client.metrics = generator, metrics
    return client


async def _ok() -> None:
    return None


@pytest.fixture
def client(tmp_path):
    return _client(tmp_path)


CHAT = {"model": "hydralm", "user": "alice",
        "messages": [{"role": "user", "content": "robots in space"}]}


def test_chat_completion_is_openai_shaped_with_hydra_extension(client):
    r = client.post("/v1/chat/completions", json={**CHAT, "n": 2})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "chat.completion" and len(body["choices"]) == 2
    # The adapter (word overlap with the prompt) picks the candidate sharing the most words.
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "sci-fi robots",
                                             "refusal": None}
    # usage: the one generator call of all 8 candidates (10 prompt tokens, one per word)
    assert body["usage"] == {"prompt_tokens": 10, "completion_tokens": 9, "total_tokens": 19}
    assert body["hydra"]["head"] == "user" and body["hydra"]["method"] == "hydra"
    assert r.headers["x-hydra-head"] == "user" and r.headers["x-hydra-user"] == "alice"
    assert body["hydra"]["prompt_item_ids"][0] == "m1"
    assert client.generator.calls[-1]["n"] == 8


def test_openai_client_parses_the_response(client):
    openai = pytest.importorskip("openai")
    oa = openai.OpenAI(base_url="http://testserver/v1", api_key="unused", http_client=client,
                       max_retries=0)
    out = oa.chat.completions.create(model="hydralm", user="alice", messages=CHAT["messages"])
    assert out.choices[0].message.content == "sci-fi robots"
    assert (out.usage.prompt_tokens, out.usage.completion_tokens) == (10, 2 + 1 + 1 + 5)
    with pytest.raises(openai.BadRequestError) as info:
        oa.chat.completions.create(model="hydralm", user="alice", messages=CHAT["messages"],
                                   logprobs=True)
    assert info.value.body["param"] == "logprobs"


def test_unseen_user_is_served_by_the_global_head(client):
    r = client.post("/v1/personalize", json={"user": "zoe", "input": "robots"})
    assert r.status_code == 200 and r.json()["retrieved_ids"] == []
    assert r.json()["head"] == "global" and r.json()["heads"] == {"adapter": "global"}


def test_history_append_is_seen_by_the_next_request(client):
    r = client.post("/v1/users/zoe/history", json={"items": [
        {"id": "z1", "description": "robots fight in deep space", "tag": "sci-fi"}]})
    assert r.json() == {"user": "zoe", "appended": 1, "history_length": 1, "durable": True}
    r = client.post("/v1/personalize", json={"user": "zoe", "input": "robots in space"})
    assert r.json()["retrieved_ids"] == ["z1"] and "robots fight" in r.json()["prompt"]
    again = client.post("/v1/users/zoe/history", json={"items": [
        {"id": "z1", "description": "again", "tag": "sci-fi"}]})
    assert again.status_code == 409 and again.json()["error"]["param"] == "items.0.id"


def test_rerank_and_score(client):
    r = client.post("/v1/rerank", json={"user": "alice", "query": "robots in space",
                                        "item_ids": ["m2", "m1"]})
    assert r.status_code == 200 and r.json()["ranking"] == [1, 0]
    assert r.json()["item_ids"] == ["m2", "m1"] and r.json()["head"] == "user"
    r = client.post("/v1/rerank", json={"user": "carol", "query": "paris", "items": ITEMS})
    assert r.json()["ranking"] == [1, 0] and r.json()["head"] == "global"
    r = client.post("/v1/score", json={"user": "bob", "query": "x", "prompt": "a b c",
                                       "candidates": ["z", "a b", "a"]})
    assert r.json()["best"] == 1 and len(r.json()["scores"]) == 3


def test_models_health_and_metrics(client):
    assert "hydralm:zero_shot" in [m["id"] for m in client.get("/v1/models").json()["data"]]
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready", "checks": {"generator": "ok"}}
    client.post("/v1/users/a/history", json={"items": []})
    assert ("/v1/models", 200) in client.metrics.seen
    assert ("/v1/users/{user_id}/history", 400) in client.metrics.seen


def test_readyz_is_503_when_a_dependency_fails(tmp_path):
    async def down() -> None:
        raise ConnectionError("connection refused")

    history = SqliteHistoryStore(tmp_path / "h2.db")
    service = HydraService(task=get_task("synth-tag"), scorer=OverlapScorer(),
                           generator=CannedGenerator(), history=history,
                           settings=PipelineSettings(), checks={"generator": down, "scorer": _ok})
    api = create_api(service, Authenticator({}), RequestLimits(), ServingMetrics())
    r = TestClient(api).get("/readyz")
    assert r.status_code == 503
    assert r.json()["checks"] == {"generator": "ConnectionError: connection refused",
                                  "scorer": "ok"}


# Every route's bad inputs: a 4xx naming the field, never a 5xx.
BAD = [
    ("/v1/chat/completions", {**CHAT, "user": None}, 400, "user"),
    ("/v1/chat/completions", {**CHAT, "user": "../x"}, 400, "user"),
    ("/v1/chat/completions", {**CHAT, "user": "a\x00b"}, 400, "user"),
    ("/v1/chat/completions", {**CHAT, "n": "3"}, 400, "n"),
    ("/v1/chat/completions", {**CHAT, "n": 9}, 400, "n"),
    ("/v1/chat/completions", {**CHAT, "max_tokens": 100_000}, 400, "max_tokens"),
    ("/v1/chat/completions", {**CHAT, "stream": 1}, 400, "stream"),
    ("/v1/chat/completions", {**CHAT, "top_p": 1.5}, 400, "top_p"),
    ("/v1/chat/completions", {**CHAT, "top_pp": 0.5}, 400, "top_pp"),
    ("/v1/chat/completions", {**CHAT, "response_format": {"type": "json_object"}}, 400,
     "response_format"),
    ("/v1/chat/completions", {**CHAT, "model": "gpt-4"}, 404, "model"),
    ("/v1/chat/completions", {**CHAT, "model": "hydralm:zero_shot", "n": 2}, 400, "n"),
    ("/v1/chat/completions", {**CHAT, "messages": [{"role": "system", "content": "x"}]}, 400,
     "messages"),
    ("/v1/completions", {"model": "hydralm", "user": "alice"}, 400, "prompt"),
    ("/v1/completions", {"model": "hydralm", "user": "alice", "prompt": ["a", "b"]}, 400,
     "prompt"),
    ("/v1/completions", {"model": "hydralm", "user": "alice", "prompt": "x", "suffix": "y"},
     400, "suffix"),
    ("/v1/personalize", {"input": "x"}, 400, "user"),
    ("/v1/personalize", {"user": "alice", "input": 5}, 400, "input"),
    ("/v1/personalize", {"user": "alice", "input": "x", "method": "magic"}, 400, "method"),
    ("/v1/personalize", {"user": "alice", "input": "x", "n_candidates": 99}, 400,
     "n_candidates"),
    ("/v1/personalize", {"user": "alice", "input": "x", "extra": 1}, 400, "extra"),
    ("/v1/rerank", {"user": "alice", "query": "x", "item_ids": []}, 400, "item_ids"),
    ("/v1/rerank", {"user": "alice", "query": "x", "item_ids": ["nope"]}, 404, "item_ids.0"),
    ("/v1/rerank", {"user": "alice", "query": "x", "items": [{"id": "1"}]}, 400,
     "items.0.description"),
    ("/v1/rerank", {"user": "alice", "query": ["x"], "item_ids": ["m1"]}, 400, "query"),
    ("/v1/score", {"user": "alice", "query": "q", "prompt": "p", "candidates": []}, 400,
     "candidates"),
    ("/v1/score", {"user": "alice", "query": "q", "prompt": "p", "candidates": "abc"}, 400,
     "candidates"),
    ("/v1/score", {"user": "alice", "query": "q", "candidates": ["a"]}, 400, "prompt"),
    ("/v1/score", {"user": "alice", "prompt": "p", "candidates": ["a"]}, 400, "query"),
    ("/v1/users/..%2Fx/history", {"items": [ITEMS[0]]}, 400, "user_id"),
    ("/v1/users/a%00b/history", {"items": [ITEMS[0]]}, 400, "user_id"),
    ("/v1/users/alice/history", {"items": []}, 400, "items"),
    ("/v1/users/alice/history", {"items": [{**ITEMS[0], "id": "new", "rating": 5}]}, 400,
     "items.0.rating"),
    ("/v1/users/alice/history", {"items": [{"id": "new", "tag": "comedy"}]}, 400,
     "items.0.description"),
    ("/v1/users/alice/history", {"items": "nope"}, 400, "items"),
    ("/v1/users/alice/history", {"item": [ITEMS[0]]}, 400, "items"),
]


@pytest.mark.parametrize("path, body, status, param", BAD)
def test_bad_input_is_a_4xx_naming_the_field(client, path, body, status, param):
    r = client.post(path, json={k: v for k, v in body.items() if v is not None})
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["param"] == param and error["message"] and error["type"]


def test_body_limit(tmp_path):
    client = _client(tmp_path, limits=RequestLimits(max_body_bytes=1024))
    big = {**CHAT, "messages": [{"role": "user", "content": "x" * 2000}]}
    r = client.post("/v1/chat/completions", json=big)
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"

    def chunks():  # no Content-Length: the limit is counted as the body streams in
        yield b'{"model": "hydralm", "user": "alice", "messages": ['
        for _ in range(100):
            yield b'{"role": "user", "content": "xxxxxxxxxxxxxxxx"},'
    r = client.post("/v1/chat/completions", content=chunks(),
                    headers={"content-type": "application/json"})
    assert r.status_code == 413


KEYS = {"key-a": {"tenant": "a", "users": ["alice"]},
        "key-b": {"tenant": "b", "users": ["bob"], "user_prefixes": ["b:"]}}


@pytest.fixture
def keyed(tmp_path, monkeypatch):
    monkeypatch.setenv("HYDRALM_API_KEYS", table_from_keys(KEYS))
    return _client(tmp_path, table=load_key_table(AuthConfig()))


ROUTES = [
    ("/v1/chat/completions", lambda u: {**CHAT, "user": u}),
    ("/v1/completions", lambda u: {"model": "hydralm", "user": u, "prompt": "robots"}),
    ("/v1/personalize", lambda u: {"user": u, "input": "robots"}),
    ("/v1/rerank", lambda u: {"user": u, "query": "robots", "items": ITEMS}),
    ("/v1/score", lambda u: {"user": u, "query": "q", "prompt": "p", "candidates": ["a"]}),
]


@pytest.mark.parametrize("path, body", ROUTES)
def test_one_key_cannot_act_for_another_keys_users(keyed, path, body):
    a, b = {"Authorization": "Bearer key-a"}, {"Authorization": "Bearer key-b"}
    assert keyed.post(path, json=body("alice"), headers=a).status_code == 200
    assert keyed.post(path, json=body("b:zed"), headers=b).status_code == 200
    for user, headers in [("alice", b), ("bob", a), ("b:zed", a)]:
        r = keyed.post(path, json=body(user), headers=headers)
        assert r.status_code == 403 and r.json()["error"]["param"] == "user"
    r = keyed.post(path, json=body("alice"))
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"


def test_keys_guard_history_and_default_user(keyed):
    a, b = {"Authorization": "Bearer key-a"}, {"Authorization": "Bearer key-b"}
    item = {"items": [{"id": "n1", "description": "d", "tag": "comedy"}]}
    assert keyed.post("/v1/users/alice/history", json=item, headers=b).status_code == 403
    assert keyed.post("/v1/users/alice/history", json=item, headers=a).status_code == 200
    # key-a has one user: a request without `user` acts for alice.
    r = keyed.post("/v1/personalize", json={"input": "robots"}, headers=a)
    assert r.json()["user"] == "alice"
    # The key is checked before the body: no key and a bad body is still a 401.
    assert keyed.post("/v1/score", json={"bogus": 1}).status_code == 401
    assert keyed.get("/v1/models").status_code == 401
    assert keyed.get("/healthz").status_code == 200


def test_logs_hold_no_keys_or_history_text(keyed, caplog):
    caplog.set_level(logging.DEBUG)
    a = {"Authorization": "Bearer key-a"}
    secret = "my-private-diary-entry"
    keyed.post("/v1/users/alice/history", headers=a, json={"items": [
        {"id": "s1", "description": secret, "tag": "comedy"}]})
    keyed.post("/v1/users/alice/history", headers=a, json={"items": [
        {"id": "s1", "description": secret, "tag": "comedy"}]})  # 409
    keyed.post("/v1/personalize", headers=a, json={"input": secret})
    keyed.post("/v1/rerank", headers={"Authorization": "Bearer key-b"},
               json={"user": "alice", "query": secret, "items": ITEMS})  # 403
    keyed.post("/v1/score", headers={"Authorization": "Bearer wrong-key"}, json={})  # 401
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert caplog.records  # the error paths do log
    for leaked in (secret, "key-a", "key-b", "wrong-key"):
        assert leaked not in text


class DownGenerator:
    """Fails like GeneratorClient after its retries, with the client's counters."""

    def __init__(self) -> None:
        self.stats = GeneratorStats()

    async def chat_samples(self, messages, **kwargs):
        self.stats.requests += 3
        self.stats.retries += 2
        self.stats.errors += 1
        raise GeneratorUnavailable("connection refused", attempts=3, url="http://127.0.0.1:9")


def test_generator_down_is_a_503_and_still_counted(tmp_path):
    seen: list[GeneratorStats] = []

    class Recording(ServingMetrics):
        def generator(self, stats):
            seen.append(stats.snapshot())
            super().generator(stats)

    service = HydraService(task=get_task("synth-tag"), scorer=OverlapScorer(),
                           generator=DownGenerator(), history=SqliteHistoryStore(tmp_path / "h"),
                           settings=PipelineSettings())
    client = TestClient(create_api(service, Authenticator({}), RequestLimits(), Recording()))
    r = client.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 503 and r.json()["error"]["code"] == "generator_unavailable"
    assert [(s["retries"], s["errors"]) for s in seen] == [(2, 1)]


@pytest.mark.parametrize("heads, word", [
    ({}, "none"),
    ({"reranker": "user", "adapter": "user"}, "user"),
    ({"reranker": "zero_fit", "adapter": "zero_fit"}, "zero_fit"),
    ({"reranker": "zero_fit", "adapter": "global"}, "global"),
])
def test_the_response_says_which_head_served(heads, word):
    from serving.service import head_summary

    assert head_summary(heads) == word
