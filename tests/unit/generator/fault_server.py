"""A real OpenAI-compatible HTTP server on 127.0.0.1 that misbehaves on cue.

Each POST takes the next scripted action (then answers normally): a status code with headers, a
slow answer, malformed JSON, a dropped connection, fewer choices than asked. Normal answers are
`sample <request number>-<choice index>` (so a cached answer is told apart from a fresh one), the
first allowed choice under `structured_outputs`, or {"answer": ...} JSON under `response_format`.
"""

from __future__ import annotations

import json
import socket
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["Action", "FaultServer"]


@dataclass(frozen=True)
class Action:
    kind: str = "ok"            # ok | status | slow | malformed | drop
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0        # slow: wait this long (interrupted by stop()) before answering
    choices: int | None = None  # ok: answer with at most this many choices
    gather: int = 0             # ok: hold until this many requests are in flight, or
    total: int = 0              # this many requests have arrived (the tail), or 5 s passed

    @staticmethod
    def ok(choices: int | None = None, gather: int = 0, total: int = 0) -> Action:
        return Action("ok", choices=choices, gather=gather, total=total)

    @staticmethod
    def fail(status: int, retry_after: str | None = None) -> Action:
        return Action("status", status=status,
                      headers={"Retry-After": retry_after} if retry_after is not None else {})

    @staticmethod
    def slow(delay_s: float) -> Action:
        return Action("slow", delay_s=delay_s)


class FaultServer:
    """Start with `with FaultServer() as server:`; `server.base_url` ends in /v1."""

    def __init__(self) -> None:
        self._script: deque[Action] = deque()
        self._cond = threading.Condition()
        self._stopped = threading.Event()
        self.bodies: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.headers: list[dict[str, str]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,),
                                        daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    @property
    def count(self) -> int:
        with self._cond:
            return len(self.bodies)

    def script(self, *actions: Action) -> None:
        with self._cond:
            self._script.extend(actions)

    def __enter__(self) -> FaultServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stopped.set()
        with self._cond:
            self._cond.notify_all()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def _next(self, path: str, body: dict[str, Any], headers: dict[str, str]) -> tuple[Action, int]:
        with self._cond:
            self.bodies.append(body)
            self.paths.append(path)
            self.headers.append(headers)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self._cond.notify_all()
            return (self._script.popleft() if self._script else Action.ok()), len(self.bodies)

    def _done(self) -> None:
        with self._cond:
            self.in_flight -= 1

    def _gather(self, count: int, total: int) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self.in_flight >= count or len(self.bodies) >= total
                                or self._stopped.is_set(), timeout=5.0)


def _answer(path: str, body: dict[str, Any], number: int, limit: int | None) -> dict[str, Any]:
    n = int(body.get("n", 1)) if limit is None else min(limit, int(body.get("n", 1)))
    allowed = (body.get("structured_outputs") or {}).get("choice")
    schema = body.get("response_format")
    texts = []
    for i in range(n):
        if allowed:
            texts.append(allowed[0])
        elif schema:
            enum = schema["json_schema"]["schema"]["properties"]["answer"]["enum"]
            texts.append(json.dumps({"answer": enum[-1]}))
        else:
            texts.append(f"sample {number}-{i}")
    if path.endswith("/chat/completions"):
        choices = [{"index": i, "message": {"role": "assistant", "content": t},
                    "finish_reason": "stop"} for i, t in enumerate(texts)]
    else:
        choices = [{"index": i, "text": t, "finish_reason": "stop"} for i, t in enumerate(texts)]
    return {"id": f"cmpl-{number}", "object": "chat.completion", "model": body.get("model"),
            "choices": choices, "usage": {"prompt_tokens": 5, "completion_tokens": 3 * n,
                                          "total_tokens": 5 + 3 * n}}


def _as_events(answer: dict[str, Any]) -> bytes:
    """A chat answer as a vLLM-style stream: choice 0 word by word, its finish chunk, the usage
    chunk, [DONE]."""
    text = answer["choices"][0]["message"]["content"]
    words = text.split(" ")
    pieces = [w if i == 0 else " " + w for i, w in enumerate(words)]
    chunks = [{"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}]
    chunks += [{"choices": [{"index": 0, "delta": {"content": p}, "finish_reason": None}]}
               for p in pieces]
    chunks.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]})
    chunks.append({"choices": [], "usage": answer["usage"]})
    return b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks) + \
        b"data: [DONE]\n\n"


def _handler_for(server: FaultServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
            pass

        def _send(self, status: int, payload: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            headers = {"Content-Type": "application/json", **(headers or {})}
            self.send_header("Content-Length", str(len(payload)))
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(payload)

        def do_GET(self) -> None:
            self._send(200, json.dumps({"object": "list", "data": [{"id": "smollm2"}]}).encode())

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            action, number = server._next(self.path, json.loads(raw), dict(self.headers))
            try:
                self._act(action, number)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a timeout test): nothing to answer
            finally:
                server._done()

        def _act(self, action: Action, number: int) -> None:
            if action.kind == "status":
                body = json.dumps({"error": {"message": f"scripted {action.status}"}}).encode()
                self._send(action.status, body, action.headers)
            elif action.kind == "malformed":
                self._send(200, b'{"choices": [ this is not json')
            elif action.kind == "drop":
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
            else:
                if action.kind == "slow":
                    server._stopped.wait(action.delay_s)
                if action.gather:
                    server._gather(action.gather, action.total)
                body = server.bodies[number - 1]
                answer = _answer(self.path, body, number, action.choices)
                if body.get("stream"):
                    self._send(200, _as_events(answer), {"Content-Type": "text/event-stream"})
                else:
                    self._send(200, json.dumps(answer).encode())

    return Handler
