"""configs/serve.yaml starts for real: `hydralm serve --config` (the `serve run` equivalent) in its
own process, with its own local Ray, both applications of the file (the embedded vLLM and the
HYDRA API) on a free loopback port, a registry where the file says (`$HYDRALM_HOME/registry`).
The process is the session's generator (conftest.py's `serve_yaml`): here a personalized request
is answered end to end, and, last of the session, SIGTERM stops everything it started."""

from __future__ import annotations

import httpx
import pytest
from serving_helpers import answers_ok

pytestmark = pytest.mark.integration

ITEMS = [{"id": f"h{i}", "description": text, "tag": tag} for i, (text, tag) in enumerate([
    ("a crew of robots crosses the galaxy in a starship", "sci-fi"),
    ("two strangers fall in love in paris", "romance"),
    ("an alien lands on a farm and befriends a boy", "sci-fi"),
    ("a wedding goes hilariously wrong", "comedy"),
    ("a robot learns to paint portraits", "sci-fi")])]


def test_the_repository_serve_config_answers_a_personalized_request(serve_yaml):
    with httpx.Client(base_url=serve_yaml.base, timeout=180) as client:
        r = client.post("/v1/users/alice/history", json={"items": ITEMS})
        assert r.status_code == 200 and r.json()["durable"] is True, r.text
        r = client.post("/v1/personalize", json={"user": "alice",
                                                 "input": "robots explore a distant planet"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["head"] == "user" and len(body["candidates"]) == 8
        assert set(body["prompt_item_ids"]) <= {item["id"] for item in ITEMS}
        assert body["answer"] in [c["text"] for c in body["candidates"]]
    assert (serve_yaml.home / "serving" / "history.db").is_file()   # where the file's null says


def test_the_engine_starts_without_a_download_task(serve_yaml):
    """The model is a local directory: Ray Serve LLM's per-node download task (a fresh process
    importing vLLM) is skipped by serving.llm.LocalModelSource."""
    assert "Started vLLM engine" in serve_yaml.log
    assert "Running tasks to download model files" not in serve_yaml.log


def test_sigterm_stops_what_it_started(serve_yaml):
    assert serve_yaml.stop() == 0
    assert "hydralm serve: stopping" in serve_yaml.log
    assert not answers_ok(f"{serve_yaml.base}/readyz")
