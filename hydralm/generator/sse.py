"""Reading an OpenAI-compatible server's streamed answer (`stream: true`): server-sent events whose
`data:` lines are `chat.completion.chunk` JSON objects, ending with `data: [DONE]`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from hydralm.generator.protocol import FINISH_REASONS

__all__ = ["StreamPiece", "parse_stream_line"]


@dataclass(frozen=True)
class StreamPiece:
    """What one event says: text added to choice 0, its finish reason, the usage, or the end."""

    text: str = ""
    finish_reason: str | None = None
    usage: tuple[int, int] | None = None   # (prompt_tokens, completion_tokens)
    done: bool = False


def parse_stream_line(line: str) -> StreamPiece | None:
    """The piece of one SSE line (None for blank, comment and non-data lines). Raises ValueError
    on a data line that is not a chunk, and on an error event."""
    if not line.startswith("data:"):
        return None
    payload = line[5:].strip()
    if payload == "[DONE]":
        return StreamPiece(done=True)
    data: Any = json.loads(payload)
    if not isinstance(data, dict):
        raise ValueError(f"stream chunk is not an object: {payload[:200]!r}")
    if "error" in data:
        raise ValueError(f"the stream ended in an error: {str(data['error'])[:300]!r}")
    usage = data.get("usage")
    tokens = None
    if isinstance(usage, dict):
        tokens = (int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))
    choices = data.get("choices") or []
    if not isinstance(choices, list) or any(not isinstance(c, dict) for c in choices):
        raise ValueError(f"stream chunk choices must be objects: {payload[:200]!r}")
    text, reason = "", None
    for choice in choices:
        if choice.get("index", 0) != 0:
            continue
        delta = choice.get("delta") or {}
        text += (delta.get("content") or "") if isinstance(delta, dict) else ""
        if choice.get("finish_reason") is not None:
            reason = choice["finish_reason"] if choice["finish_reason"] in FINISH_REASONS \
                else "stop"
    return StreamPiece(text=text, finish_reason=reason, usage=tokens)
