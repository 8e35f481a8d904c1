"""`hydralm serve --config configs/serve.yaml`: run a Ray Serve config file like `serve run`, on a
local Ray this command starts (or a cluster at --address), and block until Ctrl-C.

Each application is built here with its builder and `args` (so a bad config fails at once, with
the builder's message, before anything is deployed); then all are deployed together and the
command waits until every one runs. The apps start side by side: the HYDRA app's replicas do not
call the generator until a request comes (its /readyz reports the generator until it answers).
Honoured: `http_options`, `proxy_location` and each app's `name`, `route_prefix`, `import_path`
and `args`; per-app `runtime_env` and `deployments` overrides are refused (use `serve deploy` for
those).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import threading
import time
from pathlib import Path

from hydralm.config import load_yaml
from hydralm.errors import ConfigError
from hydralm.settings import loopback_ray

__all__ = ["register"]

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "serve", help="run the serving app (Ray Serve config file) until Ctrl-C",
        description="Start Ray Serve with a Serve config file (configs/serve.yaml: the embedded "
                    "LLM and the hydralm API), print the URLs, and block until Ctrl-C, then stop "
                    "everything this command started.")
    p.add_argument("--config", default="configs/serve.yaml", help="Serve config file (YAML)")
    p.add_argument("--address", default=None,
                   help="Ray cluster to use (e.g. auto); default: start a local Ray")
    p.add_argument("--num-cpus", type=int, default=None,
                   help="CPUs of the local Ray (default: all of this machine's)")
    p.add_argument("--object-store-mb", type=int, default=512,
                   help="object store of the local Ray in MiB")
    p.add_argument("--metrics-export-port", type=int, default=None,
                   help="Prometheus port of the local Ray's metrics agent (default: Ray picks)")
    p.set_defaults(func=_cmd_serve)


def _read_config(path: str):
    from ray.serve.schema import ServeDeploySchema

    raw = load_yaml(path)
    try:
        config = ServeDeploySchema.model_validate(raw)
    except ValueError as exc:
        raise ConfigError(f"{path}: not a valid Ray Serve config: {exc}") from exc
    for app in config.applications:
        if app.runtime_env or app.deployments:
            raise ConfigError(f"{path}: application {app.name!r} sets runtime_env or "
                              "deployments, which `hydralm serve` does not apply; use `serve "
                              "deploy` or move them into the app's args")
    return config


def _start_ray(args: argparse.Namespace) -> bool:
    """Connect to --address, or start a loopback-only local Ray; True if this command started it."""
    import ray

    if args.address:
        ray.init(address=args.address, namespace="serve")
        return False
    loopback_ray()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    kwargs = {"num_cpus": args.num_cpus, "include_dashboard": False, "namespace": "serve",
              "object_store_memory": args.object_store_mb * 1024 * 1024}
    if args.metrics_export_port:
        kwargs["_metrics_export_port"] = args.metrics_export_port
    ray.init(**kwargs)
    return True


def _import_attr(path: str):
    """`package.module:attr` (Serve's import_path form) -> the attribute."""
    module, sep, attr = path.partition(":")
    if not sep:
        module, _, attr = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigError(f"import_path {path!r} cannot be imported: {exc}") from exc


def _deploy(config) -> list[str]:
    """Build every application (a bad `args` fails here, before anything is deployed), deploy
    them together and wait until all run; the URLs they answer on."""
    from ray import serve

    serve.start(http_options=config.http_options.model_dump(),
                proxy_location=config.proxy_location)
    base = f"http://{config.http_options.host}:{config.http_options.port}"
    started = time.monotonic()
    targets = []
    for app in config.applications:
        print(f"hydralm serve: deploying {app.name!r} ({app.import_path}) at "
              f"{app.route_prefix} ...", flush=True)
        builder = _import_attr(app.import_path)
        target = builder(app.args or {}) if callable(builder) else builder
        targets.append(serve.RunTarget(target=target, name=app.name,
                                       route_prefix=app.route_prefix))
    serve.run_many(targets)
    print(f"hydralm serve: {len(targets)} application(s) running after "
          f"{time.monotonic() - started:.0f}s", flush=True)
    return [f"{base}{app.route_prefix}" for app in config.applications]


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _cmd_serve(args: argparse.Namespace) -> int:
    if not Path(args.config).is_file():
        raise ConfigError(f"serve config not found: {args.config}")
    config = _read_config(args.config)
    import ray
    from ray import serve

    started_ray = _start_ray(args)
    # Other commands can join this Ray (`--ray-address`; a local Ray started here takes Ray's token
    # from ~/.ray/auth_token: RAY_AUTH_MODE=token) and reuse its generator app (training/llm.py).
    print(f"hydralm serve: Ray at {ray.get_runtime_context().gcs_address}", flush=True)
    # After ray.init (which installs its own): SIGTERM stops like Ctrl-C, with the same cleanup.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        for url in _deploy(config):
            print(f"hydralm serve: listening on {url}", flush=True)
        print("hydralm serve: press Ctrl-C to stop", flush=True)
        threading.Event().wait()
    except KeyboardInterrupt:
        print("hydralm serve: stopping ...", flush=True)
    finally:
        serve.shutdown()
        if started_ray:
            ray.shutdown()
    return 0
