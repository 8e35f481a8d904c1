"""GeneratorClient against a real HTTP server that injects faults on cue."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from fault_server import Action

from hydralm.generator import (
    ChatRequest,
    CompletionRequest,
    GeneratorBadResponse,
    GeneratorClient,
    GeneratorRequestRejected,
    GeneratorTimeout,
    GeneratorUnavailable,
    ResponseCache,
    SamplingOptions,
)

HELLO = [{"role": "user", "content": "hello"}]


def _chat(client, **kwargs):
    return asyncio.run(_closing(client, client.chat(HELLO, **kwargs)))


async def _closing(client, coro):
    async with client:
        return await coro


@pytest.mark.parametrize("script, requests, retries", [
    ([Action.fail(500)], 2, 1),
    ([Action.fail(502), Action.fail(503), Action.fail(504)], 4, 3),
    ([Action.fail(429, retry_after="0")], 2, 1),
    ([Action("malformed")], 2, 1),
    ([Action("drop")], 2, 1),
    ([Action.slow(10)], 2, 1),
])
def test_transient_faults_end_in_success(server, make_client, script, requests, retries):
    server.script(*script)
    client = make_client(timeout_s=0.5)
    start = time.monotonic()
    assert _chat(client) == [f"sample {requests}-0"]
    assert time.monotonic() - start < 5.0
    assert server.count == requests
    assert (client.stats.requests, client.stats.retries, client.stats.errors) == (
        requests, retries, 0)


@pytest.mark.parametrize("action, error, status", [
    (Action.fail(503), GeneratorUnavailable, 503),
    (Action.fail(429), GeneratorUnavailable, 429),
    (Action("malformed"), GeneratorBadResponse, 200),
    (Action("drop"), GeneratorUnavailable, None),
    (Action.slow(10), GeneratorTimeout, None),
])
def test_persistent_faults_raise_typed_error_after_last_retry(server, make_client, action, error,
                                                             status):
    server.script(*[action] * 3)
    client = make_client(max_retries=2, timeout_s=0.3)
    start = time.monotonic()
    with pytest.raises(error) as info:
        _chat(client)
    assert time.monotonic() - start < 5.0  # three 0.3 s deadlines plus tiny backoffs, never a hang
    assert (info.value.attempts, info.value.last_status) == (3, status)
    assert server.count == 3
    assert (client.stats.errors, client.stats.retries) == (1, 2)


def test_client_error_is_not_retried(server, make_client):
    server.script(Action.fail(500), Action.fail(400))
    with pytest.raises(GeneratorRequestRejected) as info:
        _chat(make_client())
    assert (info.value.attempts, info.value.last_status) == (2, 400)
    assert "scripted 400" in str(info.value)
    assert server.count == 2


def test_retry_after_is_honoured(server, make_client):
    server.script(Action.fail(429, retry_after="1"))
    client = make_client(backoff_base_s=0.01, backoff_cap_s=5.0)
    start = time.monotonic()
    assert _chat(client) == ["sample 2-0"]
    elapsed = time.monotonic() - start
    assert 0.9 <= elapsed < 4.0  # waited what the server asked, not the 10 ms backoff


def test_retry_after_is_capped(server, make_client):
    server.script(Action.fail(503, retry_after="3600"))
    start = time.monotonic()
    assert _chat(make_client(backoff_cap_s=0.2)) == ["sample 2-0"]
    assert time.monotonic() - start < 3.0


@pytest.mark.parametrize("kwargs", [
    {},
    {"n": 8, "temperature": 1.0, "top_p": 0.9},
    {"choices": ["yes", "no"], "n": 3, "temperature": 1.0},
])
def test_request_body_never_carries_a_seed(server, make_client, kwargs):
    client = make_client()
    _chat(client, **kwargs)
    asyncio.run(_closing(client, client.complete("once upon", **kwargs)))
    assert server.count == 2
    assert all("seed" not in body for body in server.bodies)


def test_choices_send_structured_outputs_for_vllm(server, make_client):
    answers = _chat(make_client(), n=4, temperature=1.0, choices=["b", "a"])
    body = server.bodies[0]
    assert body["structured_outputs"] == {"choice": ["b", "a"]}
    assert "guided_choice" not in body and "response_format" not in body
    assert (body["n"], body["temperature"]) == (4, 1.0)
    assert answers == ["b"] * 4


def test_choices_use_json_schema_for_openai_style_apis(server, make_client):
    answers = _chat(make_client(structured_outputs_style="openai_json_schema"), n=2,
                    choices=["x", "y", "z"])
    body = server.bodies[0]
    assert "structured_outputs" not in body
    schema = body["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["answer"]["enum"] == ["x", "y", "z"]
    assert answers == ["z", "z"]  # parsed back out of {"answer": "z"}


def test_choices_style_none_sends_no_constraint(server, make_client):
    _chat(make_client(structured_outputs_style="none"), choices=["x", "y"])
    assert "structured_outputs" not in server.bodies[0]
    assert "response_format" not in server.bodies[0]


def test_fewer_choices_than_asked_are_topped_up(server, make_client):
    server.script(Action.ok(choices=3), Action.ok(choices=2))
    answers = _chat(make_client(), n=8, temperature=1.0)
    assert [body["n"] for body in server.bodies] == [8, 5, 3]
    assert answers == ["sample 1-0", "sample 1-1", "sample 1-2", "sample 2-0", "sample 2-1",
                       "sample 3-0", "sample 3-1", "sample 3-2"]
    assert server.paths == ["/v1/chat/completions"] * 3


def test_completions_endpoint_and_token_counts(server, make_client):
    client = make_client(max_tokens=7)
    answers = asyncio.run(_closing(client, client.complete("The sky is", n=2, temperature=0.5)))
    assert answers == ["sample 1-0", "sample 1-1"]
    assert server.paths == ["/v1/completions"]
    assert server.bodies[0] == {"model": "smollm2", "prompt": "The sky is", "n": 2,
                                "temperature": 0.5, "max_tokens": 7}
    assert (client.stats.calls, client.stats.prompt_tokens, client.stats.completion_tokens) == (
        1, 5, 6)
    assert client.stats.latency_quantile(0.5) is not None


def test_concurrency_is_bounded(server, make_client):
    server.script(*[Action.ok(gather=3, total=9)] * 9)
    client = make_client(max_concurrency=3, timeout_s=10.0)
    results = client.run_many([ChatRequest(messages=HELLO) for _ in range(9)])
    assert len(results) == 9
    assert server.max_in_flight == 3


def test_cache_hit_makes_no_call_and_returns_identical_samples(server, make_client, tmp_path):
    requests = [ChatRequest(messages=HELLO, n=4, temperature=1.0),
                CompletionRequest(prompt="hi", choices=("a", "b"))]
    first = make_client(cache=str(tmp_path)).run_many(requests)
    assert server.count == 2
    second_client = make_client(cache=str(tmp_path))
    second = second_client.run_many(requests)
    assert server.count == 2  # nothing reached the server
    assert second == first
    assert (second_client.cache.hits, second_client.cache.misses) == (2, 0)
    assert second_client.stats.calls == 0
    # A different sampling parameter is a different entry.
    make_client(cache=str(tmp_path)).run_many([ChatRequest(messages=HELLO, n=4, temperature=0.5)])
    assert server.count == 3


def test_identical_concurrent_requests_share_one_answer_with_a_cache(server, make_client,
                                                                     tmp_path):
    """Two methods asking the same sampled prompt at once must see the same samples the cache
    keeps (else a re-run, answered by the cache, would differ from the first run)."""
    server.script(Action.slow(0.3), Action.ok())
    client = make_client(cache=str(tmp_path))
    sampled = ChatRequest(messages=HELLO, n=4, temperature=1.0)
    first, second, other = client.run_many([sampled, sampled, ChatRequest(messages=HELLO)])
    assert first == second and server.count == 2          # one call for the two identical ones
    assert client.run_many([sampled]) == [first]          # and the cache holds that answer
    # without a cache, identical requests are independent samples
    uncached = make_client()
    uncached.run_many([sampled, sampled])
    assert server.count == 4


def test_injected_cache_is_used(server, make_client, tmp_path):
    cache = ResponseCache(tmp_path)
    client = GeneratorClient(make_client().config, cache=cache)
    assert client.generate_sync(ChatRequest(messages=HELLO)) == ["sample 1-0"]
    assert client.generate_sync(ChatRequest(messages=HELLO)) == ["sample 1-0"]
    assert (cache.hits, cache.misses, server.count) == (1, 1, 1)


@pytest.mark.parametrize("header, key, expected", [
    ("authorization", "sk-test", ("authorization", "Bearer sk-test")),
    ("api-key", "azure-key", ("api-key", "azure-key")),
])
def test_api_key_header(server, make_client, header, key, expected):
    _chat(make_client(api_key=key, api_key_header=header))
    sent = {k.lower(): v for k, v in server.headers[0].items()}
    assert sent[expected[0]] == expected[1]


def test_api_key_from_environment(server, make_client, monkeypatch):
    _chat(make_client())
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    _chat(make_client())
    monkeypatch.setenv("HYDRALM_GENERATOR_API_KEY", "hk-env")
    _chat(make_client())
    sent = [{k.lower(): v for k, v in h.items()}.get("authorization") for h in server.headers]
    assert sent == [None, "Bearer sk-env", "Bearer hk-env"]


def test_run_many_refuses_a_running_loop(server, make_client):
    client = make_client()

    async def inside():
        client.run_many([ChatRequest(messages=HELLO)])

    with pytest.raises(RuntimeError, match="await"):
        asyncio.run(inside())
    assert server.count == 0


def test_client_is_reusable_across_event_loops(server, make_client):
    client = make_client()
    assert client.generate_sync(ChatRequest(messages=HELLO)) == ["sample 1-0"]
    assert client.generate_sync(ChatRequest(messages=HELLO)) == ["sample 2-0"]
    assert json.loads(json.dumps(client.stats.snapshot()))["calls"] == 2


def _sample(client, req, **kwargs):
    return asyncio.run(_closing(client, client.sample(req, **kwargs)))


def test_samples_carry_finish_reasons_and_summed_token_counts(server, make_client):
    server.script(Action.ok(choices=3), Action.ok(choices=2))
    samples = _sample(make_client(), ChatRequest(messages=tuple(HELLO), n=8, temperature=1.0))
    assert len(samples.texts) == len(samples.finish_reasons) == 8
    assert set(samples.finish_reasons) == {"stop"}
    # three answers (3, 2, then the 3 still missing): the prompt read 3 times, 3 tokens a choice
    assert (samples.prompt_tokens, samples.completion_tokens) == (15, 3 * 8)


def test_sampling_options_go_into_the_body(server, make_client):
    opts = SamplingOptions(stop=("\n", "END"), top_p=0.5, frequency_penalty=0.25,
                           presence_penalty=-1.0)
    _sample(make_client(), ChatRequest(messages=tuple(HELLO), options=opts))
    body = server.bodies[0]
    assert (body["stop"], body["top_p"], body["frequency_penalty"], body["presence_penalty"]) == (
        ["\n", "END"], 0.5, 0.25, -1.0)


def test_a_seed_is_never_sent_and_a_seeded_call_repeats(server, make_client):
    client = make_client()
    req = ChatRequest(messages=tuple(HELLO), n=3, temperature=1.0)

    async def calls():
        async with client:
            return [await client.sample(req, seed=s) for s in (7, 7, 8)]

    first, again, other = asyncio.run(calls())
    assert again == first and other.texts != first.texts
    assert server.count == 2 and all("seed" not in b for b in server.bodies)


def test_seed_memo_size_zero_ignores_seeds(server, make_client):
    client = make_client(seed_memo_size=0)
    req = ChatRequest(messages=tuple(HELLO))

    async def calls():
        async with client:
            return [await client.sample(req, seed=7) for _ in range(2)]

    asyncio.run(calls())
    assert server.count == 2


def _stream(client, **kwargs):
    async def go():
        async with client:
            return [p async for p in client.chat_stream(HELLO, **kwargs)]

    return asyncio.run(go())


def test_chat_stream_yields_pieces_then_the_samples(server, make_client):
    client = make_client()
    parts = _stream(client, max_tokens=4, options=SamplingOptions(stop=("\n",)))
    *pieces, samples = parts
    assert pieces == ["sample", " 1-0"] and samples.texts == ["sample 1-0"]
    assert (samples.finish_reasons, samples.prompt_tokens, samples.completion_tokens) == (
        ["length"], 5, 3)
    body = server.bodies[0]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["stop"] == ["\n"] and "seed" not in body
    assert (client.stats.calls, client.stats.requests, client.stats.completion_tokens) == (1, 1, 3)


@pytest.mark.parametrize("action, error", [
    (Action.fail(503), GeneratorUnavailable),
    (Action.fail(400), GeneratorRequestRejected),
    (Action("drop"), GeneratorUnavailable),
])
def test_a_failed_stream_is_a_typed_error_without_retry(server, make_client, action, error):
    server.script(action)
    client = make_client()
    with pytest.raises(error):
        _stream(client)
    assert server.count == 1 and client.stats.errors == 1
