"""Server-sent events in OpenAI's chunk format for `stream: true`.

The stream opens at once (status 200; for chat, a first chunk per choice with `role:
assistant`). A method that answers with one sample (zero_shot, icl_random, rag_bm25,
hydra_reranker; unseeded) then relays the generator's text as it is written, after retrieval and
reranking. HYDRA's adapter methods choose among complete candidates, so their chosen answer
streams in word-sized pieces once chosen. Each choice's last chunk has its `finish_reason`, the
last of all also the `hydra` extension; with `stream_options.include_usage` every chunk has
`usage: null` and one more chunk (`choices: []`) has the usage. `data: [DONE]` ends every stream.
An error after the stream opened is OpenAI's convention: one `data: {"error": {...}}` event (the
`openai` client raises it as an APIError), then `data: [DONE]`.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Literal

from fastapi.responses import StreamingResponse

from serving.errors import error_body, map_exception
from serving.openai_protocol import HydraInfo, Usage

__all__ = ["DONE", "ChunkWriter", "Completed", "event", "sse_response", "split_text"]

log = logging.getLogger(__name__)

DONE = b"data: [DONE]\n\n"
_PIECE = re.compile(r"\s*\S+|\s+$")


def event(data: dict[str, Any]) -> bytes:
    """One SSE event carrying `data` as JSON."""
    return b"data: " + json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode(
        "utf-8") + b"\n\n"


def split_text(text: str) -> list[str]:
    """Word-sized pieces (each with its leading whitespace) that join back to `text`."""
    return _PIECE.findall(text)


@dataclass(frozen=True)
class Completed:
    """A finished completion: the chosen texts (best first), their finish reasons, the request's
    usage and the hydra extension."""

    texts: list[str]
    finish_reasons: list[str]
    usage: Usage
    hydra: HydraInfo


class ChunkWriter:
    """The chunks of one streamed response: `chat.completion.chunk` or `text_completion`."""

    def __init__(self, kind: Literal["chat", "text"], model: str, *,
                 include_usage: bool) -> None:
        self.kind, self.model, self.include_usage = kind, model, include_usage
        self.id = f"{'chatcmpl' if kind == 'chat' else 'cmpl'}-{uuid.uuid4().hex}"
        self.created = int(time.time())

    def _chunk(self, choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        chunk = {"id": self.id, "object": "chat.completion.chunk" if self.kind == "chat"
                 else "text_completion", "created": self.created, "model": self.model,
                 "system_fingerprint": None, "choices": choices}
        if self.include_usage:
            chunk["usage"] = None
        chunk.update(extra)
        return chunk

    def _choice(self, index: int, piece: str | None, role: bool = False,
                finish_reason: str | None = None) -> dict[str, Any]:
        if self.kind == "text":
            return {"index": index, "text": piece or "", "finish_reason": finish_reason,
                    "logprobs": None}
        delta: dict[str, Any] = {"role": "assistant"} if role else {}
        if piece is not None:
            delta["content"] = piece
        return {"index": index, "delta": delta, "finish_reason": finish_reason, "logprobs": None}

    def opening(self, n: int) -> list[dict[str, Any]]:
        """What goes out before the answer is chosen: chat's role chunk per choice."""
        if self.kind != "chat":
            return []
        return [self._chunk([self._choice(i, "", role=True)]) for i in range(n)]

    def piece(self, index: int, text: str) -> dict[str, Any]:
        """One piece of choice `index`'s text."""
        return self._chunk([self._choice(index, text)])

    def answer(self, done: Completed, *, text_sent: bool = False) -> list[dict[str, Any]]:
        """The chosen texts piece by piece (unless `text_sent`: they went out as the generator
        wrote them), each choice's finish chunk, then the usage chunk."""
        chunks = []
        last = len(done.texts) - 1
        for i, (text, reason) in enumerate(zip(done.texts, done.finish_reasons, strict=True)):
            if not text_sent:
                chunks += [self.piece(i, p) for p in split_text(text)]
            extra = {"hydra": done.hydra.model_dump()} if i == last else {}
            chunks.append(self._chunk([self._choice(i, None, finish_reason=reason)], **extra))
        if self.include_usage:
            chunks.append(self._chunk([], usage=done.usage.model_dump()))
        return chunks


async def _events(writer: ChunkWriter, n: int,
                  source: Callable[[], AsyncIterator[str | Completed]],
                  on_error: Callable[[str | None], None]) -> AsyncIterator[bytes]:
    for chunk in writer.opening(n):
        yield event(chunk)
    done, live = None, False
    try:
        async for item in source():
            if isinstance(item, str):  # the generator's text as it comes (choice 0)
                live = True
                yield event(writer.piece(0, item))
            else:
                done = item
    except Exception as exc:  # noqa: BLE001 - after the 200, every error becomes an error event
        mapped = map_exception(exc)
        log.log(logging.ERROR if mapped.status >= 500 else logging.INFO,
                "stream %s ended by an error: %d %s", writer.id, mapped.status, mapped.code,
                exc_info=mapped.code == "internal_error")
        on_error(mapped.code)
        yield event(error_body(mapped))
        yield DONE
        return
    assert done is not None, "a completion stream ends with its Completed"
    for chunk in writer.answer(done, text_sent=live):
        yield event(chunk)
    yield DONE


def sse_response(writer: ChunkWriter, n: int,
                 source: Callable[[], AsyncIterator[str | Completed]], *,
                 on_error: Callable[[str | None], None]) -> StreamingResponse:
    """The streamed response; `source` makes the answer once the stream is open: text pieces of
    choice 0 as they come (if any), then the Completed."""
    return StreamingResponse(_events(writer, n, source, on_error), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
