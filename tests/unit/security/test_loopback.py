"""The local mode binds to loopback only, by configuration: the local Serve configs' HTTP host,
the generator URL the app derives, and the setting that keeps every Ray port on 127.0.0.1 in
every local entry point. tests/integration/test_faults_serving.py checks the sockets a running
local Ray and Serve actually listen on."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from serving.config import ServeArgs

REPO = Path(__file__).resolve().parents[3]
# configs/ holds the local configs (deploy/ the cluster ones, which bind the pod network).
SERVE_CONFIGS = [p for p in sorted((REPO / "configs").glob("*.yaml"))
                 if "http_options" in (yaml.safe_load(p.read_text(encoding="utf-8")) or {})]


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def test_there_is_a_local_serve_config():
    assert "serve.yaml" in [p.name for p in SERVE_CONFIGS]


@pytest.mark.parametrize("path", SERVE_CONFIGS, ids=lambda p: p.name)
def test_local_configs_serve_on_loopback_only(path):
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    http = config["http_options"]
    assert _loopback(http.get("host", "")), f"{path.name}: http_options.host {http.get('host')!r}"
    for app in config.get("applications", []):
        url = (app.get("args") or {}).get("generator", {}).get("base_url")
        assert url is None or _loopback(urlsplit(url).hostname), f"{app['name']}: {url}"


def test_the_embedded_generator_is_reached_on_loopback():
    assert _loopback(urlsplit(ServeArgs().generator_base_url()).hostname)


@pytest.mark.parametrize("path", ["Makefile", "tests/conftest.py"])
def test_the_make_targets_and_the_tests_keep_ray_on_loopback(path):
    """RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 makes a local Ray bind 127.0.0.1 only (verified with
    `ss -ltnp`); without it Ray also listens on the machine's other interfaces."""
    text = (REPO / path).read_text(encoding="utf-8")
    assert "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER" in text and (
        '"0"' in text or ":= 0" in text), path


@pytest.mark.parametrize("path", ["serving/cli.py", "serving/demo.py", "training/llm.py"])
def test_every_command_that_starts_a_local_ray_asks_for_loopback(path):
    assert "loopback_ray()" in (REPO / path).read_text(encoding="utf-8"), path


def test_loopback_ray_works_when_ray_was_imported_first():
    """Ray reads the setting once, at import; the CLI imports Ray before a command runs, so
    setting the variable then is not enough (a `hydralm eval` run outside make bound the
    machine's address this way). No ray.init: the node address Ray would pick is the check."""
    code = ("import ray\n"
            "from ray._private import services\n"
            "from hydralm.settings import loopback_ray\n"
            "loopback_ray()\n"
            "print(services.get_node_ip_address())\n")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120, check=True).stdout.split()
    assert out[-1] == "127.0.0.1", out
