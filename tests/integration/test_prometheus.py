"""A real Prometheus server scrapes Ray's metrics export port and finds hydralm's serving metrics.

Prometheus is Debian's `prometheus` package (.ci/run installs it); the test skips when the binary
is absent. The app is deployed with a generator URL nothing listens on (scoring routes, history, and one
failing personalization), so this test needs no LLM.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time

import httpx
import pytest
from serving_helpers import build_tiny_registry, free_port

pytestmark = pytest.mark.integration

APP = "hydralm-metrics"
PREFIX = "/metrics-test"
# Series this test's requests must produce, from the ingress and from the Scorer (Ray adds the
# application label, which keeps other tests' requests out of these queries).
EXPECTED = [
    ("ray_hydralm_http_requests_total", 'route="/v1/rerank",status="200"'),
    ("ray_hydralm_http_requests_total", 'route="/v1/score",status="400"'),
    ("ray_hydralm_stage_latency_ms_bucket", 'stage="rerank"'),
    ("ray_hydralm_stage_latency_ms_bucket", 'stage="history"'),
    ("ray_hydralm_request_latency_ms_count", 'route="/v1/score"'),
    ("ray_hydralm_heads_served_total", 'kind="adapter",head="user"'),
    ("ray_hydralm_scorer_batch_pairs_bucket", ""),
    ("ray_hydralm_scorer_head_cache_events_total", 'event="load"'),
    ("ray_hydralm_generator_retries_total", ""),
    ("ray_hydralm_generator_errors_total", ""),
    ("ray_hydralm_http_requests_total", 'route="/v1/personalize",status="503"'),
]


def _query(metric: str, labels: str) -> str:
    return f'{metric}{{application="{APP}"{"," + labels if labels else ""}}}'


@pytest.fixture(scope="module")
def prometheus_bin() -> str:
    path = shutil.which("prometheus")
    if path is None:
        pytest.skip("the prometheus binary is absent (apt-get install prometheus; .ci/run does)")
    return path


@pytest.fixture(scope="module")
def metrics_app(serve_http_port, tmp_path_factory):
    """The hydralm app without a generator, and a few requests of each kind through it."""
    from ray import serve

    from serving.app import build_app

    root = tmp_path_factory.mktemp("metrics")
    serve.run(build_app({
        "task": "synth-tag", "registry": str(build_tiny_registry(root / "registry")),
        "history_path": str(root / "history.db"),
        # Nothing listens there: one retry, then a 503 (the generator's error counters).
        "generator": {"backend": "openai", "base_url": f"http://127.0.0.1:{free_port()}/v1",
                      "max_retries": 1, "backoff_base_s": 0.05},
        "scorer": {"num_cpus": 0.25, "num_buckets": 2, "name": "MetricsScorer"},
        "ingress": {"num_cpus": 0, "name": "MetricsIngress"},
    }), name=APP, route_prefix=PREFIX)
    item = {"id": "1", "description": "robots in space", "tag": "sci-fi"}
    with httpx.Client(base_url=f"http://127.0.0.1:{serve_http_port}{PREFIX}", timeout=60) as c:
        assert c.post("/v1/users/alice/history", json={"items": [item]}).status_code == 200
        for _ in range(3):
            assert c.post("/v1/rerank", json={"user": "alice", "query": "robots",
                                              "item_ids": ["1"]}).status_code == 200
            assert c.post("/v1/score", json={"user": "alice", "query": "q", "prompt": "p",
                                             "candidates": ["a", "b"]}).status_code == 200
        assert c.post("/v1/score", json={"user": "alice", "query": "q", "prompt": "p",
                                         "candidates": []}).status_code == 400
        r = c.post("/v1/personalize", json={"user": "alice", "input": "robots"})
        assert r.status_code == 503 and r.json()["error"]["code"] == "generator_unavailable"
    yield
    serve.delete(APP)


@pytest.fixture(scope="module")
def prometheus(prometheus_bin, ray_local, tmp_path_factory):
    """Prometheus on 127.0.0.1 scraping this node's Ray metrics port every second; stopped by
    PID at the end."""
    metrics_port = ray_local.nodes()[0]["MetricsExportPort"]
    root = tmp_path_factory.mktemp("prometheus")
    config = root / "prometheus.yml"
    config.write_text(json.dumps({  # JSON is YAML
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{"job_name": "ray", "static_configs": [
            {"targets": [f"127.0.0.1:{metrics_port}"]}]}]}))
    port = free_port()
    log = (root / "prometheus.log").open("w")
    proc = subprocess.Popen(
        [prometheus_bin, f"--config.file={config}", f"--storage.tsdb.path={root / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


def _present(base: str, query: str) -> bool:
    try:
        r = httpx.get(f"{base}/api/v1/query", params={"query": query}, timeout=5)
    except httpx.HTTPError:
        return False  # not listening yet
    return r.status_code == 200 and bool(r.json()["data"]["result"])


def test_prometheus_scrapes_hydralm_serving_metrics(metrics_app, prometheus):
    deadline = time.monotonic() + 90  # first scrape ~17 s; Ray exports every ~10 s
    missing = [_query(metric, labels) for metric, labels in EXPECTED]
    while missing and time.monotonic() < deadline:
        missing = [q for q in missing if not _present(prometheus, q)]
        if missing:
            time.sleep(1)
    assert not missing, f"Prometheus never saw {missing}"
    r = httpx.get(f"{prometheus}/api/v1/query", params={
        "query": f"sum({_query('ray_hydralm_http_requests_total', EXPECTED[0][1])})"})
    assert float(r.json()["data"]["result"][0]["value"][1]) >= 3
