"""The local mode binds to loopback only, by configuration: the local Serve configs' HTTP host,
the generator URL the app derives, and the setting that keeps every Ray port on 127.0.0.1 in
every local entry point. tests/integration/test_faults_serving.py checks the sockets a running
local Ray and Serve actually listen on."""

from __future__ import annotations

import ipaddress
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


@pytest.mark.parametrize("path", ["Makefile", "tests/conftest.py", "serving/cli.py",
                                  "serving/demo.py", "training/llm.py"])
def test_every_local_entry_point_keeps_ray_on_loopback(path):
    """RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 makes a local Ray bind 127.0.0.1 only (verified with
    `ss -ltnp`); without it Ray also listens on the machine's other interfaces."""
    text = (REPO / path).read_text(encoding="utf-8")
    assert "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER" in text and (
        '"0"' in text or ":= 0" in text), path
