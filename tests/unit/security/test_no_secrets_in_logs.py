"""No API key and no history text reaches a log: a full request cycle through every route of the
real app in this process (successes, 4xx of every kind, and a generator whose error bodies echo
the prompt, which holds history text), with every logger captured at DEBUG and stdout/stderr."""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from hydra_parts import HISTORIES, KEYS, bearer, running_api

KEY_A, KEY_B = list(KEYS)
GENERATOR_KEY = "generator-secret-key-5551212"
SECRET = "my-private-diary-entry-about-zeppelins"


class EchoingGenerator:
    """An OpenAI-shaped server that fails every POST with 500, echoing the request body (as some
    servers echo the prompt in their errors)."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                payload = json.dumps({"error": {"message": body.decode()}}).encode()
                self.send_response(500)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __exit__(self, *exc_info) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _cycle(client, a: dict, b: dict) -> None:
    item = {"id": "s1", "description": SECRET, "tag": "comedy"}
    client.post("/v1/users/alice/history", headers=a, json={"items": [item]})       # 200
    client.post("/v1/users/alice/history", headers=a, json={"items": [item]})       # 409
    client.post("/v1/users/alice/history", headers=b, json={"items": [item]})       # 403
    client.post("/v1/users/alice/history", headers=a, json={"items": [               # 400
        {**item, "id": "s2", "description": SECRET + "\x00"}]})
    client.post("/v1/personalize", headers=a, json={"user": "alice", "input": SECRET})
    client.post("/v1/chat/completions", headers=a, json={
        "model": "hydralm", "user": "alice", "messages": [{"role": "user", "content": SECRET}]})
    client.post("/v1/completions", headers=a, json={"model": "hydralm:rag_bm25",
                                                    "user": "alice", "prompt": SECRET})
    client.post("/v1/rerank", headers=a, json={"user": "alice", "query": SECRET,
                                               "item_ids": ["s1", "a1"]})
    client.post("/v1/rerank", headers=b, json={"user": "alice", "query": SECRET,     # 403
                                               "items": [item]})
    client.post("/v1/score", headers=a, json={"user": "alice", "query": SECRET,
                                              "prompt": SECRET, "candidates": [SECRET]})
    client.post("/v1/score", headers=bearer("wrong-" + KEY_A), json={"prompt": SECRET})
    client.post("/v1/score", headers=a, content=b'{"prompt": "' + SECRET.encode() + b'"',
                )                                                                    # bad JSON
    client.get("/v1/models", headers=a)
    client.get("/readyz")


@pytest.mark.parametrize("generator", ["answers", "echoes its errors"])
def test_a_full_request_cycle_logs_no_key_and_no_history_text(tmp_path, caplog, capfd,
                                                              generator):
    caplog.set_level(logging.DEBUG)
    with EchoingGenerator() as echo_url:
        overrides = {"api_key": GENERATOR_KEY, "max_retries": 2,
                     **({"base_url": echo_url} if generator != "answers" else {})}
        with running_api(tmp_path, keys=KEYS, generator=overrides) as parts:
            _cycle(parts.client, bearer(KEY_A), bearer(KEY_B))
            retried = parts.generator.stats.retries
    assert retried > 0 or generator == "answers"
    records = "\n".join(f"{r.getMessage()}\n{r.exc_text or ''}" for r in caplog.records)
    out, err = capfd.readouterr()
    assert any(r.name == "serving.errors" for r in caplog.records), "error paths do log"
    secrets = [KEY_A, KEY_B, GENERATOR_KEY, SECRET,
               *(i["description"] for items in HISTORIES.values() for i in items)]
    for text, where in [(records, "log records"), (out + err, "stdout/stderr")]:
        leaked = [s for s in secrets if s in text]
        assert not leaked, f"{leaked} in {where}"
