"""`hydralm demo` waits for an app until Serve reports it RUNNING *and* its URL answers 200: the
LLM app's ingress answers /v1/models while its engine replica is still starting. A real loopback
HTTP server; Serve's status is scripted (a Ray cluster for it is the integration tests' job)."""

from __future__ import annotations

import http.server
import threading
from types import SimpleNamespace

import pytest
from ray import serve

from hydralm.errors import HydraError
from serving import demo


@pytest.fixture
def url():
    class Ok(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (the stdlib's name)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Ok)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1/models"
    server.shutdown()


def _statuses(monkeypatch, *states: str) -> list[str]:
    """serve.status() reports `states` for the app, one per call, the last one after that."""
    seen: list[str] = []

    def status():
        state = states[min(len(seen), len(states) - 1)]
        seen.append(state)
        return SimpleNamespace(applications={"hydralm-llm": SimpleNamespace(
            status=state, message="engine exploded" if state == "DEPLOY_FAILED" else "")})

    monkeypatch.setattr(serve, "status", status)
    monkeypatch.setattr(demo.time, "sleep", lambda s: None)
    return seen


def test_an_answering_url_waits_for_the_app_to_run(monkeypatch, url, capsys):
    seen = _statuses(monkeypatch, "DEPLOYING", "DEPLOYING", "RUNNING")
    demo._wait_ok(url, "hydralm-llm", timeout_s=30, what="the embedded generator")
    assert seen == ["DEPLOYING", "DEPLOYING", "RUNNING"]
    assert "the embedded generator ready after" in capsys.readouterr().out


def test_a_failed_deploy_is_a_clear_error(monkeypatch, url):
    _statuses(monkeypatch, "DEPLOYING", "DEPLOY_FAILED")
    with pytest.raises(HydraError, match="failed to deploy .*DEPLOY_FAILED.*engine exploded"):
        demo._wait_ok(url, "hydralm-llm", timeout_s=30, what="the embedded generator")


def test_an_app_that_never_runs_times_out_naming_its_state(monkeypatch, url):
    _statuses(monkeypatch, "DEPLOYING")
    with pytest.raises(HydraError, match=r"did not become ready .* within 0 s \(app DEPLOYING"):
        demo._wait_ok(url, "hydralm-llm", timeout_s=0.3, what="the embedded generator")
