"""configs/serve.yaml starts for real: `hydralm serve --config` (the `serve run` equivalent) in its
own process, with its own local Ray, both applications of the file (the embedded vLLM and the
HYDRA API) on a free loopback port, a registry where the file says (`$HYDRALM_HOME/registry`).
A personalized request is answered end to end, and SIGTERM stops everything it started."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml
from serving_helpers import build_tiny_registry, free_port, wait_until

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
ITEMS = [{"id": f"h{i}", "description": text, "tag": tag} for i, (text, tag) in enumerate([
    ("a crew of robots crosses the galaxy in a starship", "sci-fi"),
    ("two strangers fall in love in paris", "romance"),
    ("an alien lands on a farm and befriends a boy", "sci-fi"),
    ("a wedding goes hilariously wrong", "comedy"),
    ("a robot learns to paint portraits", "sci-fi")])]


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """`hydralm serve` on the repository's configs/serve.yaml, only the port changed."""
    home = tmp_path_factory.mktemp("serve-home")
    build_tiny_registry(home / "registry")
    port = free_port()
    doc = yaml.safe_load((REPO / "configs" / "serve.yaml").read_text(encoding="utf-8"))
    doc["http_options"]["port"] = port
    for app in doc["applications"]:
        embedded = (app["args"].get("generator") or app["args"]).get("embedded")
        embedded["http_port"] = port
    config = home / "serve.yaml"
    config.write_text(yaml.safe_dump(doc), encoding="utf-8")
    env = {**os.environ, "HYDRALM_HOME": str(home)}
    for name in ("RAY_ADDRESS", "HYDRALM_API_KEYS"):     # a fresh local Ray; no key check
        env.pop(name, None)
    log = (home / "serve.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "hydralm.cli", "serve", "--config", str(config)],
                            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: proc.poll() is not None or (_ok(f"{base}/readyz")
                                                       and _ok(f"{base}/llm/v1/models")),
                   timeout_s=600, what="both applications of configs/serve.yaml", interval_s=2)
        assert proc.poll() is None, (home / "serve.log").read_text(errors="replace")[-3000:]
        yield proc, base, home
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=30)
        log.close()


def test_the_repository_serve_config_answers_a_personalized_request(served):
    proc, base, home = served
    with httpx.Client(base_url=base, timeout=180) as client:
        r = client.post("/v1/users/alice/history", json={"items": ITEMS})
        assert r.status_code == 200 and r.json()["durable"] is True, r.text
        r = client.post("/v1/personalize", json={"user": "alice",
                                                 "input": "robots explore a distant planet"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["head"] == "user" and len(body["candidates"]) == 8
        assert set(body["prompt_item_ids"]) <= {item["id"] for item in ITEMS}
        assert body["answer"] in [c["text"] for c in body["candidates"]]
    assert (home / "serving" / "history.db").is_file()    # where the file's null says it goes


def test_sigterm_stops_what_it_started(served):
    proc, base, home = served
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 0
    log = (home / "serve.log").read_text(errors="replace")
    assert "hydralm serve: stopping" in log
    assert not _ok(f"{base}/readyz")
