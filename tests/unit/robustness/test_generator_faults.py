"""The generator down, slow or erroring, seen through the HTTP API of the real app in this process
(tests/hydra_parts.py; the generator is the fault-injection server on loopback): every request
ends in bounded time with a clear 5xx naming the cause, the circuit breaker then answers 503 at
once with Retry-After, the scoring routes keep working, and everything recovers by itself."""

from __future__ import annotations

import socket
import time

import pytest
from hydra_parts import running_api
from unit.generator.fault_server import Action

PERSONALIZE = {"user": "alice", "input": "robots in gardens"}
CHAT = {"model": "hydralm", "user": "alice",
        "messages": [{"role": "user", "content": "robots in gardens"}]}
# 2 attempts per call; the breaker opens after 4 failed attempts (two failed requests).
GENERATOR = {"timeout_s": 0.5, "max_retries": 1, "deadline_s": 2.0,
             "breaker": {"failure_threshold": 4, "cooldown_s": 3.0}}


@pytest.fixture
def parts(tmp_path):
    with running_api(tmp_path, generator=GENERATOR) as p:
        yield p


def _timed(call):
    start = time.monotonic()
    response = call()
    return response, time.monotonic() - start


@pytest.mark.parametrize("script, status, code", [
    ([Action.fail(500)] * 2, 503, "generator_unavailable"),
    ([Action.fail(429, retry_after="0")] * 2, 503, "generator_unavailable"),
    ([Action("drop")] * 2, 503, "generator_unavailable"),
    ([Action("malformed")] * 2, 502, "generator_bad_response"),
    ([Action.slow(5)] * 2, 504, "generator_timeout"),
    ([Action.fail(400)], 502, "generator_rejected_request"),
])
def test_each_failure_is_a_clear_5xx_in_bounded_time(parts, script, status, code):
    parts.server.script(*script)
    r, seconds = _timed(lambda: parts.client.post("/v1/personalize", json=PERSONALIZE))
    assert (r.status_code, r.json()["error"]["code"]) == (status, code), r.text
    assert seconds < 5.0                # deadline_s 2 plus the pipeline (slow: 5 s per attempt)
    r = parts.client.post("/v1/personalize", json=PERSONALIZE)   # the next one is fine
    assert r.status_code == 200, r.text


def test_breaker_fails_fast_keeps_scoring_up_and_recovers(parts):
    parts.server.script(*[Action.fail(503)] * 4)
    for _ in range(2):
        assert parts.client.post("/v1/chat/completions", json=CHAT).status_code == 503
    sent = parts.server.count
    r, seconds = _timed(lambda: parts.client.post("/v1/chat/completions", json=CHAT))
    assert r.status_code == 503 and r.json()["error"]["code"] == "generator_circuit_open"
    assert 1 <= int(r.headers["retry-after"]) <= 3 and seconds < 2.0
    assert parts.server.count == sent, "an open breaker must not call the generator"
    # The two HYDRA models need no generator: /v1/rerank and /v1/score keep answering.
    assert parts.client.post("/v1/score", json={"user": "alice", "query": "q", "prompt": "p",
                                                "candidates": ["a", "b"]}).status_code == 200
    assert parts.client.post("/v1/rerank", json={"user": "alice", "query": "q",
                                                 "item_ids": ["a1"]}).status_code == 200
    time.sleep(3.05)                                      # cool-down over: one probe goes out
    r = parts.client.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 200, r.text
    assert parts.generator.breaker.state == "closed"
    assert parts.generator.stats.short_circuits == 1


def test_a_generator_that_is_down_is_503_then_fast(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"   # closed when the block ends
    with running_api(tmp_path, generator={**GENERATOR, "base_url": dead}) as parts:
        codes = []
        for _ in range(3):
            r, seconds = _timed(lambda: parts.client.post("/v1/personalize", json=PERSONALIZE))
            codes.append(r.json()["error"]["code"])
            assert r.status_code == 503 and seconds < 5.0
    assert codes == ["generator_unavailable", "generator_unavailable", "generator_circuit_open"]
