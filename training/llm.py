"""The embedded generator on the current Ray: deploy vLLM with Ray Serve LLM, wait until it
answers, hand out its OpenAI base URL, and remove what was started.

Jobs only ever get a URL: the same code then runs against a vLLM cluster or a hosted API when the
config names one (`backend: openai` or a base_url), and nothing is deployed.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import httpx
import ray
from ray import serve
from ray.serve.schema import ApplicationStatus

from hydralm.errors import ConfigError, GeneratorError
from hydralm.generator import GeneratorConfig, llm_config_kwargs
from hydralm.settings import loopback_ray

__all__ = ["APP_NAME", "LOCAL_RAY_INIT", "check_port_free", "embedded_generator", "local_ray"]

log = logging.getLogger(__name__)

APP_NAME = "hydralm-llm"
# The settings verified on a 2-core machine; RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 keeps every Ray
# port on 127.0.0.1 (set by local_ray()).
LOCAL_RAY_INIT: dict[str, Any] = {"num_cpus": 2, "include_dashboard": False,
                                  "object_store_memory": 256 * 1024**2}
_POLL_S = 1.0


@contextlib.contextmanager
def local_ray(**overrides: Any) -> Iterator[None]:
    """A loopback-only local Ray for the CLI, demos and benchmarks; shut down on exit unless one
    was already running."""
    if ray.is_initialized():
        yield
        return
    loopback_ray()
    ray.init(**{**LOCAL_RAY_INIT, **overrides})
    try:
        yield
    finally:
        ray.shutdown()


@contextlib.contextmanager
def embedded_generator(cfg: GeneratorConfig) -> Iterator[str]:
    """Yield the OpenAI base URL of the generator `cfg` describes.

    An external one (backend openai, or any base_url) is yielded as is. Otherwise the LLM app is
    deployed on the current Ray as `hydralm-llm` (an app of that name already RUNNING is reused)
    and deleted on exit if this call deployed it. Needs ray.init() first.
    """
    external = cfg.effective_base_url()
    if cfg.backend == "openai" or external:
        yield external or ""
        return
    if not ray.is_initialized():
        raise ConfigError("the embedded generator needs a running Ray: call ray.init() (or use "
                          "training.llm.local_ray()) first, or set generator.base_url")
    port, started_serve = _ensure_serve(cfg.embedded.http_port)
    prefix = "" if cfg.embedded.route_prefix == "/" else cfg.embedded.route_prefix
    base_url = f"http://127.0.0.1:{port}{prefix}/v1"
    deployed, scratch = False, None
    try:
        deployed, scratch = _deploy_unless_running(cfg)
        _wait_until_ready(base_url, cfg)
        yield base_url
    finally:
        if deployed:
            log.info("deleting the Serve app %s", APP_NAME)
            serve.delete(APP_NAME)
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
        if started_serve and not serve.status().applications:
            serve.shutdown()


def _llm_app(cfg: GeneratorConfig) -> serve.Application:
    # The same three lines as serving.llm.build_llm_app (training never imports serving).
    from ray.serve.llm import LLMConfig, build_openai_app

    return build_openai_app({
        "llm_configs": [LLMConfig(**llm_config_kwargs(cfg))],
        "ingress_deployment_config": {"ray_actor_options": {"num_cpus": 0}},
    })


def _ensure_serve(port: int) -> tuple[int, bool]:
    """(HTTP port of Serve, whether this call started it). A running Serve keeps its own port."""
    # No public API tells the port of a running Serve; its controller client does.
    from ray.serve.context import _get_global_client

    client = _get_global_client(raise_if_no_controller_running=False)
    if client is not None:
        return client.http_config.port, False
    check_port_free(port)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    return port, True


def check_port_free(port: int) -> None:
    """Raise ConfigError naming the port when something listens on 127.0.0.1:`port`."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            raise ConfigError(f"cannot start Serve on 127.0.0.1:{port}: the port is in use "
                              f"({exc.strerror}); set generator.embedded.http_port to a free "
                              f"port, got {port!r}") from exc


def _app_status(name: str) -> tuple[str | None, str]:
    app = serve.status().applications.get(name)
    if app is None:
        return None, ""
    return ApplicationStatus(app.status).value, app.message or ""


def _deploy_unless_running(cfg: GeneratorConfig) -> tuple[bool, str | None]:
    """Deploy the app unless it runs: (deployed, the engine's scratch directory to remove).

    vLLM leaves IPC sockets and shared-memory files in the temp directory; pointing the engine's
    TMPDIR at a private one tells them apart from anyone else's. (Where that path does not exist,
    on another node, tempfile falls back to /tmp.)"""
    status, _ = _app_status(APP_NAME)
    if status == ApplicationStatus.RUNNING:
        log.info("reusing the running Serve app %s", APP_NAME)
        return False, None
    scratch = None
    if "TMPDIR" not in cfg.embedded.env_vars:
        scratch = tempfile.mkdtemp(prefix="hydralm-vllm-")
        env = {**cfg.embedded.env_vars, "TMPDIR": scratch}
        cfg = cfg.model_copy(update={"embedded": cfg.embedded.model_copy(
            update={"env_vars": env})})
    try:
        app = _llm_app(cfg)
        log.info("deploying the embedded generator %s (%s) as Serve app %s", cfg.model,
                 cfg.embedded.device, APP_NAME)
        serve.run_many([serve.RunTarget(target=app, name=APP_NAME,
                                        route_prefix=cfg.embedded.route_prefix)],
                       wait_for_ingress_deployment_creation=False,
                       wait_for_applications_running=False)
    except BaseException:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
        raise
    return True, scratch


def _wait_until_ready(base_url: str, cfg: GeneratorConfig) -> None:
    """Poll the app status and GET /v1/models until the model is listed, or fail clearly."""
    timeout = cfg.embedded.startup_timeout_s
    deadline = time.monotonic() + timeout
    start = time.monotonic()
    status, message = None, ""
    while time.monotonic() < deadline:
        status, message = _app_status(APP_NAME)
        if status in (ApplicationStatus.DEPLOY_FAILED, ApplicationStatus.UNHEALTHY):
            raise GeneratorError(f"the embedded generator failed to start ({status}): "
                                 f"{message[-2000:]}")
        if status == ApplicationStatus.RUNNING and _lists_model(base_url, cfg.model):
            log.info("embedded generator ready at %s after %.1fs", base_url,
                     time.monotonic() - start)
            return
        time.sleep(_POLL_S)
    raise GeneratorError(f"the embedded generator did not answer {base_url}/models within "
                         f"{timeout:.0f}s (app status {status}: {message[-500:]!r}); raise "
                         "generator.embedded.startup_timeout_s or read the Ray Serve logs")


def _lists_model(base_url: str, model: str) -> bool:
    try:
        resp = httpx.get(f"{base_url}/models", timeout=5.0)
    except httpx.HTTPError:
        return False
    if resp.status_code != 200:
        return False
    try:
        ids = [m.get("id") for m in resp.json().get("data", [])]
    except (ValueError, AttributeError):
        return False
    if model not in ids:
        raise GeneratorError(f"the Serve app {APP_NAME} at {base_url} serves {ids}, not "
                             f"generator.model {model!r}")
    return True
