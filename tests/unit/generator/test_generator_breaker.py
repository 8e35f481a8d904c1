"""The generator's circuit breaker and call deadline: alone on a fake clock, then inside
GeneratorClient against the fault-injection server (a real HTTP server on loopback)."""

from __future__ import annotations

import asyncio
import time

import pytest
from fault_server import Action

from hydralm.generator import (
    CircuitBreaker,
    CircuitBreakerConfig,
    GeneratorCircuitOpen,
    GeneratorRequestRejected,
    GeneratorTimeout,
    GeneratorUnavailable,
)
from hydralm.generator.breaker import BreakerOpen

HELLO = [{"role": "user", "content": "hello"}]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _breaker(**overrides) -> tuple[CircuitBreaker, Clock]:
    clock = Clock()
    config = CircuitBreakerConfig(**{"failure_threshold": 3, "cooldown_s": 10.0, **overrides})
    return CircuitBreaker(config, clock=clock), clock


def test_opens_after_k_consecutive_failures_then_probes_and_closes():
    breaker, clock = _breaker()
    for _ in range(2):
        breaker.before_attempt()
        breaker.record_failure()
    breaker.before_attempt()
    breaker.record_success()                    # a success resets the count
    for _ in range(3):
        breaker.before_attempt()
        breaker.record_failure()
    assert breaker.state == "open" and breaker.opens == 1
    clock.now += 4.0
    with pytest.raises(BreakerOpen) as info:
        breaker.before_attempt()
    assert info.value.retry_in_s == pytest.approx(6.0)
    clock.now += 6.0
    assert breaker.state == "half_open"
    breaker.before_attempt()                    # the one probe
    with pytest.raises(BreakerOpen):
        breaker.before_attempt()                # a second caller while the probe runs
    breaker.record_success()
    assert breaker.state == "closed"
    breaker.before_attempt()


def test_a_failed_probe_reopens_for_a_fresh_cooldown():
    breaker, clock = _breaker(failure_threshold=1)
    breaker.before_attempt()
    breaker.record_failure()
    clock.now += 10.0
    breaker.before_attempt()
    breaker.record_failure()
    assert breaker.state == "open" and breaker.opens == 2
    clock.now += 9.9
    with pytest.raises(BreakerOpen):
        breaker.before_attempt()


def test_an_abandoned_probe_frees_its_slot():
    breaker, clock = _breaker(failure_threshold=1)
    breaker.before_attempt()
    breaker.record_failure()
    clock.now += 10.0
    breaker.before_attempt()
    breaker.abandon()                           # the caller was cancelled
    breaker.before_attempt()                    # the next caller may probe
    assert breaker.state == "half_open"


def test_disabled_breaker_never_refuses():
    breaker, _ = _breaker(enabled=False, failure_threshold=1)
    for _ in range(5):
        breaker.before_attempt()
        breaker.record_failure()
    assert breaker.state == "closed" and breaker.opens == 0


@pytest.mark.parametrize("field, value", [("failure_threshold", 0), ("cooldown_s", 0),
                                          ("half_open_probes", 0), ("colldown_s", 1)])
def test_bad_breaker_settings_are_refused(field, value):
    with pytest.raises(ValueError, match=field):
        CircuitBreakerConfig(**{field: value})


def _run(client, coro):
    async def closing():
        async with client:
            return await coro
    return asyncio.run(closing())


def _fast_fail_client(make_client, **breaker):
    return make_client(max_retries=1, timeout_s=0.3, breaker={
        "failure_threshold": 4, "cooldown_s": 1.0, **breaker})


def test_client_fails_fast_while_open_and_recovers(server, make_client):
    server.script(*[Action.fail(503)] * 4)
    client = _fast_fail_client(make_client)

    async def scenario():
        for _ in range(2):                      # 2 calls x 2 attempts = 4 failures: open
            with pytest.raises(GeneratorUnavailable) as info:
                await client.chat(HELLO)
            assert not isinstance(info.value, GeneratorCircuitOpen)
        sent = server.count
        start = time.monotonic()
        with pytest.raises(GeneratorCircuitOpen) as info:
            await client.chat(HELLO)
        fast = time.monotonic() - start
        assert server.count == sent, "an open breaker must not call the server"
        assert info.value.attempts == 0 and 0 < info.value.retry_after_s <= 1.0
        await asyncio.sleep(1.05)               # cool-down over: the next call probes
        return fast, await client.chat(HELLO)

    fast, answer = _run(client, scenario())
    assert fast < 0.5                           # no network at all (the count above proves it)
    assert answer == ["sample 5-0"] and client.breaker.state == "closed"
    assert (client.stats.short_circuits, client.stats.breaker_opens, client.stats.errors) == (
        1, 1, 3)


def test_a_breaker_opening_mid_call_ends_its_retries(server, make_client):
    server.script(*[Action.fail(500)] * 10)
    client = make_client(max_retries=8, breaker={"failure_threshold": 3, "cooldown_s": 30})
    with pytest.raises(GeneratorCircuitOpen) as info:
        _run(client, client.chat(HELLO))
    assert server.count == 3 and info.value.attempts == 3 and info.value.last_status == 500


def test_only_one_probe_reaches_a_half_open_server(server, make_client):
    server.script(Action.fail(503), Action.fail(503), Action.slow(0.3))
    client = make_client(max_retries=0, breaker={"failure_threshold": 2, "cooldown_s": 0.2})

    async def scenario():
        for _ in range(2):
            with pytest.raises(GeneratorUnavailable):
                await client.chat(HELLO)
        await asyncio.sleep(0.25)
        return await asyncio.gather(*(client.chat(HELLO) for _ in range(5)),
                                    return_exceptions=True)

    results = _run(client, scenario())
    assert server.count == 3                    # two failures and one probe
    assert sum(isinstance(r, list) for r in results) == 1
    assert sum(isinstance(r, GeneratorCircuitOpen) for r in results) == 4


def test_rejected_requests_do_not_open_it(server, make_client):
    server.script(*[Action.fail(400)] * 6)
    client = make_client(breaker={"failure_threshold": 2})

    async def scenario():
        for _ in range(6):
            with pytest.raises(GeneratorRequestRejected):
                await client.chat(HELLO)
        return await client.chat(HELLO)

    assert _run(client, scenario()) == ["sample 7-0"]
    assert client.breaker.state == "closed"


def test_a_server_that_is_down_opens_it(make_client, free_port):
    client = make_client(base_url=f"http://127.0.0.1:{free_port()}/v1", max_retries=2,
                         breaker={"failure_threshold": 3, "cooldown_s": 60})

    async def scenario():
        with pytest.raises(GeneratorUnavailable, match="connection failed"):
            await client.chat(HELLO)
        start = time.monotonic()
        with pytest.raises(GeneratorCircuitOpen):
            await client.chat(HELLO)
        return time.monotonic() - start

    assert _run(client, scenario()) < 0.5


def test_deadline_bounds_a_call_against_a_slow_server(server, make_client):
    server.script(*[Action.slow(5)] * 5)
    client = make_client(timeout_s=2.0, max_retries=5, deadline_s=0.5,
                         breaker={"enabled": False})
    start = time.monotonic()
    with pytest.raises(GeneratorTimeout):
        _run(client, client.chat(HELLO))
    assert time.monotonic() - start < 3.0      # 6 attempts x 2 s without the deadline
    # no retry after the deadline (on a loaded machine the one attempt may not even reach it)
    assert server.count <= 1


@pytest.fixture
def free_port():
    import socket

    def pick() -> int:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return sock.getsockname()[1]
    return pick
