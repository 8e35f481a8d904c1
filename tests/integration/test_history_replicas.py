"""Two ingress replicas on a local Ray Serve share one PostgreSQL history store: one replica is killed
during a stream of appends, and every acknowledged item is in the store afterwards, once, in order.

The app is `build_app`'s (1 Scorer replica with MiniLM bases, 2 ingress replicas, history_backend
postgres). On a cluster the pods' environment carries HYDRALM_HISTORY_DSN (from a Secret); this
session's Ray started long before the database, so the test hands the DSN to the ingress replicas
as their runtime_env, binding the ingress as build_app does.
"""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from serving_helpers import build_tiny_registry, kill_replica, replica_names, wait_until
from unit.generator.fault_server import FaultServer

from hydralm.history_pg import PostgresHistoryStore

pytestmark = pytest.mark.integration

APP, PREFIX = "hydralm-history", "/history"
CLIENTS, ITEMS_PER_CLIENT = 3, 100


@pytest.fixture(scope="module")
def deployed(serve_http_port, postgres, tmp_path_factory):
    from ray import serve

    from serving.app import HydraIngress
    from serving.auth import load_key_table
    from serving.config import ServeArgs
    from serving.scorer import build_scorer

    root = tmp_path_factory.mktemp("history-replicas")
    dsn = postgres.create_database()
    with FaultServer() as generator:
        cfg = ServeArgs.from_dict({
            "task": "synth-tag", "registry": str(build_tiny_registry(root / "registry")),
            "history_backend": "postgres", "n_candidates": 2,
            "generator": {"backend": "openai", "base_url": generator.base_url},
            "scorer": {"num_replicas": 1, "num_cpus": 0, "torch_threads": 1},
            "ingress": {"num_replicas": 2, "num_cpus": 0}})
        options = cfg.ingress.deployment_options()
        options["ray_actor_options"]["runtime_env"] = {"env_vars": {
            "HYDRALM_HISTORY_DSN": dsn, "HYDRALM_HISTORY_TIMEOUT_S": "2"}}
        app = HydraIngress.options(**options).bind(cfg, load_key_table(cfg.auth),
                                                   build_scorer(cfg.scorer_args()))
        start = time.monotonic()
        serve.run(app, name=APP, route_prefix=PREFIX)
        print(f"{APP} deployed in {time.monotonic() - start:.1f} s")
        try:
            yield f"http://127.0.0.1:{serve_http_port}{PREFIX}", dsn
        finally:
            serve.delete(APP)


def _client_stream(base_url: str, client_no: int, acked: list[str], failures: list[str],
                   halfway: threading.Event) -> None:
    """Appends ITEMS_PER_CLIENT items one by one, re-sending each until it is acknowledged."""
    deadline = time.monotonic() + 180
    with httpx.Client(base_url=base_url, timeout=30) as http:
        for n in range(ITEMS_PER_CLIENT):
            item = {"id": f"c{client_no}-{n}", "description": f"story {n}", "tag": "comedy"}
            while time.monotonic() < deadline:
                try:
                    r = http.post("/v1/users/alice/history", json={"items": [item]})
                    if r.status_code == 200:
                        break
                    failures.append(f"{r.status_code}")
                except httpx.HTTPError as exc:   # the killed replica's connection
                    failures.append(type(exc).__name__)
                time.sleep(0.05)
            else:
                return
            acked.append(item["id"])
            if n == ITEMS_PER_CLIENT // 4:
                halfway.set()


def test_killing_one_of_two_ingress_replicas_loses_no_acknowledged_append(deployed):
    base_url, dsn = deployed
    replicas = replica_names(APP, "HydraIngress")
    assert len(replicas) == 2
    acked: list[list[str]] = [[] for _ in range(CLIENTS)]
    failures: list[str] = []
    halfway = threading.Event()
    threads = [threading.Thread(target=_client_stream, args=(base_url, c, acked[c], failures,
                                                             halfway)) for c in range(CLIENTS)]
    for t in threads:
        t.start()
    assert halfway.wait(120), "the appends never got a quarter of the way"
    kill_replica(replicas[0])
    acked_at_kill = sum(map(len, acked))
    for t in threads:
        t.join(240)
    wait_until(lambda: len(replica_names(APP, "HydraIngress")) == 2
               and replicas[0] not in replica_names(APP, "HydraIngress"),
               timeout_s=120, what="a replacement ingress replica")
    store = PostgresHistoryStore(dsn)
    try:
        stored = [str(i["id"]) for i in store.get("alice")]
    finally:
        store.close()
    assert all(len(a) == ITEMS_PER_CLIENT for a in acked), (
        [len(a) for a in acked], failures[-5:])
    assert acked_at_kill < CLIENTS * ITEMS_PER_CLIENT // 2  # the stream went on after the kill
    assert len(stored) == len(set(stored)) == CLIENTS * ITEMS_PER_CLIENT
    for c in range(CLIENTS):   # each client's items in the order it appended them
        assert [i for i in stored if i.startswith(f"c{c}-")] == acked[c]
    print(f"{sum(map(len, acked))} acknowledged appends ({acked_at_kill} before the kill), "
          f"{len(failures)} failed tries re-sent: {sorted(set(failures))}")
