"""Faults of the deployed serving app on a local Ray Serve: a Scorer replica killed under load, the
ingress killed right after acknowledging a history append, the generator failing behind Serve's
proxy; plus what the running system exposes: the sockets it listens on and what its logs hold.

One app (`build_app`, 2 Scorer replicas, 1 ingress, API keys on, MiniLM bases with random heads)
serves every test here, in file order. The generator is the fault-injection server on loopback
(tests/unit/generator/fault_server.py), so no LLM start-up is needed.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from serving_helpers import build_tiny_registry, kill_replica, replica_names, wait_until
from unit.generator.fault_server import Action, FaultServer

from serving.auth import hash_key

pytestmark = pytest.mark.integration

APP, PREFIX = "hydralm-faults", "/faults"
KEYS = {"fault-key-a-31415926": {"tenant": "a", "users": ["alice"], "user_prefixes": ["a:"]},
        "fault-key-b-27182818": {"tenant": "b", "users": ["bob"], "user_prefixes": ["b:"]}}
A, B = ({"Authorization": f"Bearer {k}"} for k in KEYS)
SECRET = "zeppelin-diary-entry-never-to-be-logged"
ITEMS = [{"id": f"i{n}", "description": f"{word} story", "tag": "comedy"}
         for n, word in enumerate(["robots", "paris", "ghosts"])]
LOAD_USERS = [("alice", A), ("bob", B), ("a:guest", A)]    # own, own and the global head


@pytest.fixture(scope="module")
def generator():
    with FaultServer() as server:
        yield server


@pytest.fixture(scope="module")
def api(serve_http_port, generator, tmp_path_factory):
    from ray import serve

    from serving.app import build_app

    root = tmp_path_factory.mktemp("faults")
    keys_file = root / "keys.json"
    keys_file.write_text(json.dumps({hash_key(k): v for k, v in KEYS.items()}))
    args = {
        "task": "synth-tag", "registry": str(build_tiny_registry(root / "registry")),
        "history_path": str(root / "history.db"), "n_candidates": 2,
        "generator": {"backend": "openai", "base_url": generator.base_url, "timeout_s": 5,
                      "max_retries": 0, "breaker": {"failure_threshold": 2, "cooldown_s": 5}},
        "scorer": {"num_replicas": 2, "num_cpus": 0.5, "torch_threads": 1, "num_buckets": 4,
                   "poll_interval_s": 1.0},
        "ingress": {"num_cpus": 0},
        "auth": {"keys_file": str(keys_file)},
    }
    start = time.monotonic()
    serve.run(build_app(args), name=APP, route_prefix=PREFIX)
    with httpx.Client(base_url=f"http://127.0.0.1:{serve_http_port}{PREFIX}",
                      timeout=120) as client:
        print(f"{APP} deployed in {time.monotonic() - start:.1f} s")
        yield client
    serve.delete(APP)


def _rerank(client: httpx.Client, user: str, headers: dict) -> httpx.Response:
    return client.post("/v1/rerank", headers=headers, json={
        "user": user, "query": "robots in paris", "items": ITEMS})


def _load(client: httpx.Client, stop: threading.Event, out: list) -> None:
    """One closed-loop client: rerank as users in turn until `stop`; (user, status, body)."""
    n = 0
    while not stop.is_set():
        user, headers = LOAD_USERS[n % len(LOAD_USERS)]
        n += 1
        try:
            r = _rerank(client, user, headers)
            out.append((user, r.status_code, r.json()))
        except httpx.HTTPError as exc:               # a hang shows up as a timeout here
            out.append((user, 0, {"error": {"code": type(exc).__name__}}))


def test_killing_a_scorer_replica_under_load(api):
    expected = {u: _rerank(api, u, h).json()["scores"] for u, h in LOAD_USERS}
    assert len({tuple(s) for s in expected.values()}) == len(LOAD_USERS), "heads must differ"
    before = replica_names(APP, "Scorer")
    assert len(before) == 2
    results: list = []
    stop = threading.Event()
    with httpx.Client(base_url=str(api.base_url), timeout=60) as load_client:
        workers = [threading.Thread(target=_load, args=(load_client, stop, results))
                   for _ in range(6)]
        for w in workers:
            w.start()
        wait_until(lambda: len(results) >= 12, timeout_s=60, what="load to build up")
        kill_replica(before[0])
        killed_at = len(results)
        wait_until(lambda: len(results) >= killed_at + 24, timeout_s=120,
                   what="requests to keep completing after the kill")
        stop.set()
        for w in workers:
            w.join(90)
    statuses = Counter(status for _, status, _ in results)
    assert set(statuses) <= {200, 503}, f"statuses {dict(statuses)}: {results[:3]}"
    for user, status, body in results:
        if status == 200:   # batched with other users' rows: float32 sums in another order
            assert body["user"] == user and body["scores"] == pytest.approx(
                expected[user], abs=1e-5), f"{user} got an answer that is not theirs"
        else:
            assert body["error"]["code"] in {"replica_unavailable", "deployment_unavailable",
                                             "overloaded"}, body
    wait_until(lambda: len(set(replica_names(APP, "Scorer")) - set(before)) == 1
               and len(replica_names(APP, "Scorer")) == 2, timeout_s=120,
               what="Serve to replace the killed Scorer replica")
    for user, headers in LOAD_USERS:          # every bucket, on whichever replica holds it
        r = _rerank(api, user, headers)
        assert r.status_code == 200 and r.json()["scores"] == pytest.approx(expected[user])
    print(f"kill under load: {dict(statuses)} over {len(results)} requests")


def test_an_acknowledged_append_survives_killing_the_ingress_at_once(api):
    item = {"id": "acked-1", "description": SECRET, "tag": "action"}
    acked = api.post("/v1/users/alice/history", headers=A, json={"items": [item]})
    assert acked.status_code == 200 and acked.json()["durable"] is True
    (ingress,) = replica_names(APP, "HydraIngress")
    kill_replica(ingress)                     # no other request in between
    wait_until(lambda: replica_names(APP, "HydraIngress") not in ([], [ingress])
               and _ready(api), timeout_s=120, what="a new ingress replica")
    r = api.post("/v1/rerank", headers=A, json={"user": "alice", "query": "zeppelin",
                                                "item_ids": ["acked-1"]})
    assert r.status_code == 200 and r.json()["item_ids"] == ["acked-1"], r.text
    again = api.post("/v1/users/alice/history", headers=A, json={"items": [item]})
    assert again.status_code == 200, again.text  # a re-sent append is idempotent: adds nothing
    assert again.json()["history_length"] == acked.json()["history_length"]


def _ready(api: httpx.Client) -> bool:
    try:
        return api.get("/readyz", timeout=10).status_code == 200
    except httpx.HTTPError:
        return False


def test_a_failing_generator_is_503_then_fails_fast_through_serve(api, generator):
    body = {"user": "alice", "input": "robots in paris"}
    generator.script(Action.fail(503), Action.fail(503))
    codes = [api.post("/v1/personalize", headers=A, json=body).json()["error"]["code"]
             for _ in range(2)]
    assert codes == ["generator_unavailable"] * 2
    sent = generator.count
    r = api.post("/v1/personalize", headers=A, json=body)
    assert r.status_code == 503 and r.json()["error"]["code"] == "generator_circuit_open"
    assert int(r.headers["retry-after"]) >= 1 and generator.count == sent
    assert _rerank(api, "alice", A).status_code == 200          # scoring is unaffected
    wait_until(lambda: api.post("/v1/personalize", headers=A, json=body).status_code == 200,
               timeout_s=30, what="the generator's breaker to close again")


def test_other_tenants_users_are_refused_by_the_deployed_app(api):
    for user, headers in [("bob", A), ("b:guest", A), ("alice", B), ("a:guest", B)]:
        assert _rerank(api, user, headers).status_code == 403
        r = api.post(f"/v1/users/{user}/history", headers=headers, json={"items": ITEMS[:1]})
        assert r.status_code == 403


def _our_pids() -> set[int]:
    """This process and every process it started (Ray's GCS, raylet, workers and replicas)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [os.getpid()]
    while todo:
        pid = todo.pop()
        found.add(pid)
        todo.extend(children.get(pid, []))
    return found


def _is_loopback(host: str) -> bool:
    if host == "*":
        return False
    address = ipaddress.ip_address(host)
    return address.is_loopback or bool(getattr(address, "ipv4_mapped", None)
                                       and address.ipv4_mapped.is_loopback)


def test_everything_started_listens_on_loopback_but_serves_grpc_port(api):
    """Every socket our Ray, Serve and test servers listen on is on loopback, except one per
    Serve replica: Ray Serve 2.60 binds each replica's inter-deployment gRPC server to [::]:0
    with no setting to change it (ray-project/ray#64544). docs/RELIABILITY.md lists it."""
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    ours, exposed, loopback = _our_pids(), Counter(), 0
    for line in out.splitlines():
        pids = {int(p) for p in re.findall(r"pid=(\d+)", line)} & ours
        if not pids:
            continue
        host = line.split()[3].rsplit(":", 1)[0].strip("[]").split("%")[0]
        if _is_loopback(host):
            loopback += 1
            continue
        (pid,) = pids
        title = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
        assert title.startswith("ray::ServeReplica:"), f"{title} listens beyond loopback: {line}"
        exposed[pid] += 1
    assert loopback >= 5, f"expected Ray's and Serve's ports among ours:\n{out[:2000]}"
    replicas = len(replica_names(APP, "Scorer")) + len(replica_names(APP, "HydraIngress"))
    assert len(exposed) >= replicas and set(exposed.values()) == {1}, exposed


def test_ray_logs_hold_no_keys_or_history_text(api):
    session = _session_dir()
    texts = [p.read_text(errors="replace") for p in session.rglob("*")
             if p.is_file() and p.suffix in (".log", ".out", ".err", ".txt")]
    assert texts, f"no log files under {session}"
    for secret in [*KEYS, SECRET, *(i["description"] for i in ITEMS)]:
        assert not any(secret in t for t in texts), f"{secret!r} found in {session}"


def _session_dir() -> Path:
    """The session directory of the Ray this test process started (its GCS names it)."""
    for pid in _our_pids():
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        for arg in cmdline:
            if arg.startswith(b"--session-dir="):
                return Path(arg.split(b"=", 1)[1].decode())
    raise AssertionError("no Ray process of ours names its session directory")
