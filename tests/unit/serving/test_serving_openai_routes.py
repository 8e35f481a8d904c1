"""The OpenAI routes over HTTP without Ray (the real app, service, auth and history store; the
deterministic scorer and generator of test_serving_ingress): streaming as the `openai` SDK reads
it, usage, finish reasons, sampling parameters reaching the generator, GET /v1/models/{model} and
per-key rate limits."""

from __future__ import annotations

from dataclasses import replace

import pytest
from test_serving_ingress import CHAT, _client

from serving.auth import Authenticator, KeyGrant, hash_key
from serving.ratelimit import RateLimit


@pytest.fixture
def client(tmp_path):
    return _client(tmp_path)


def _sdk(client):
    openai = pytest.importorskip("openai")
    return openai, openai.OpenAI(base_url="http://testserver/v1", api_key="unused",
                                 http_client=client, max_retries=0)


def test_the_sdk_streams_chat_with_usage(client):
    _, oa = _sdk(client)
    stream = oa.chat.completions.create(model="hydralm", user="alice", messages=CHAT["messages"],
                                        n=2, stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    text = {0: "", 1: ""}
    for c in chunks:
        for choice in c.choices:
            text[choice.index] += choice.delta.content or ""
    assert text[0] == "sci-fi robots"  # the same pick as without streaming
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == 19
    assert chunks[-2].model_extra["hydra"]["user"] == "alice"


def test_the_sdk_streams_text_completions_with_echo(client):
    _, oa = _sdk(client)
    stream = oa.completions.create(model="hydralm", user="alice", prompt="robots ", echo=True,
                                   stream=True)
    assert "".join(c.choices[0].text for c in stream) == "robots sci-fi robots"


def test_single_answer_methods_relay_the_generators_stream(client):
    _, oa = _sdk(client)
    stream = oa.chat.completions.create(model="hydralm:zero_shot", user="alice", stream=True,
                                        messages=CHAT["messages"], temperature=0.4,
                                        stream_options={"include_usage": True})
    chunks = list(stream)
    assert client.generator.calls[-1]["stream"] is True  # not the complete-then-split path
    assert client.generator.calls[-1]["temperature"] == 0.4
    assert [c.choices[0].delta.content for c in chunks if c.choices] == [
        "", "sci-fi", " robots", None]
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].usage.total_tokens == 9
    seeded = list(oa.chat.completions.create(model="hydralm:zero_shot", user="alice",
                                             stream=True, seed=1, messages=CHAT["messages"]))
    assert "stream" not in client.generator.calls[-1]  # seeded: from the seed memo's path
    assert "".join(c.choices[0].delta.content or "" for c in seeded) == "comedy"


def test_a_stream_that_fails_after_it_opened_raises_in_the_sdk(tmp_path):
    from test_serving_ingress import DownGenerator

    client = _client(tmp_path)
    client.app.state.hydra.service.generator = DownGenerator()
    openai, oa = _sdk(client)
    stream = oa.chat.completions.create(model="hydralm", user="alice", messages=CHAT["messages"],
                                        stream=True)
    with pytest.raises(openai.APIError, match="generator unavailable"):
        list(stream)


@pytest.mark.parametrize("change, status, param", [
    ({"model": "gpt-4o"}, 404, "model"), ({"model": "hydralm:zero_shot", "n": 2}, 400, "n")])
def test_a_stream_is_refused_before_it_opens(client, change, status, param):
    r = client.post("/v1/chat/completions", json={**CHAT, "stream": True, **change})
    assert r.status_code == status and r.json()["error"]["param"] == param


def test_finish_reason_is_the_generators_per_choice(client):
    r = client.post("/v1/chat/completions", json={**CHAT, "n": 4})
    by_text = {c["message"]["content"]: c["finish_reason"] for c in r.json()["choices"]}
    assert by_text["x"] == "length" and by_text["sci-fi robots"] == "stop"


def test_sampling_parameters_reach_the_generator_and_temperature_only_single_answers(client):
    body = {**CHAT, "temperature": 0.7, "top_p": 0.5, "stop": "END", "presence_penalty": 1,
            "seed": 11, "max_completion_tokens": 9}
    assert client.post("/v1/chat/completions", json=body).status_code == 200
    call = client.generator.calls[-1]
    assert call["temperature"] == 1.0  # hydra: the candidate policy's, not the client's
    assert (call["options"].stop, call["options"].top_p, call["options"].presence_penalty,
            call["seed"], call["max_tokens"]) == (("END",), 0.5, 1, 11, 9)
    r = client.post("/v1/chat/completions", json={**body, "model": "hydralm:zero_shot"})
    assert r.status_code == 200 and client.generator.calls[-1]["temperature"] == 0.7


def test_model_by_id(client):
    assert client.get("/v1/models/hydralm:rag_bm25").json()["id"] == "hydralm:rag_bm25"
    r = client.get("/v1/models/gpt-4o")
    assert r.status_code == 404 and r.json()["error"]["param"] == "model"


def _keyed(tmp_path, grant: dict, default: RateLimit | None = None):
    client = _client(tmp_path)
    client.app.state.hydra = replace(client.app.state.hydra, auth=Authenticator(
        {hash_key("k"): KeyGrant.model_validate(grant)}, default))
    return client


def test_requests_per_second_limit_is_a_429_with_retry_after(tmp_path):
    client = _keyed(tmp_path, {"tenant": "t", "users": ["alice"],
                               "rate_limit": {"requests_per_s": 0.01}})
    headers = {"Authorization": "Bearer k"}
    assert client.get("/v1/models", headers=headers).status_code == 200
    r = client.get("/v1/models", headers=headers)
    assert r.status_code == 429 and 1 <= int(r.headers["retry-after"]) <= 100
    assert r.json()["error"]["type"] == "requests"
    assert r.json()["error"]["code"] == "rate_limit_exceeded"


def test_tokens_per_minute_limit_charges_usage(tmp_path):
    client = _keyed(tmp_path, {"tenant": "t", "users": ["alice"]},
                    RateLimit(tokens_per_min=10))  # the auth config's default
    openai, oa = _sdk(client)
    oa = oa.with_options(api_key="k")
    assert oa.chat.completions.create(model="hydralm", messages=CHAT["messages"]).usage \
        .total_tokens == 19  # admitted, then 9 tokens in debt
    with pytest.raises(openai.RateLimitError) as info:
        oa.chat.completions.create(model="hydralm", messages=CHAT["messages"])
    assert info.value.body["type"] == "tokens"
    # 9 tokens of debt at 10 tokens/min: 54 s, rounded up
    assert 54 <= int(info.value.response.headers["retry-after"]) <= 55
