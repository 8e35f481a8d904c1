"""The OpenAI routes' bodies: every field of OpenAI's chat and completions requests is accepted;
serving/openai_fields.py says what each one does here (applied, ignored, or refused for the values
`refusals()` names). Fields OpenAI does not define stay a 400 naming them (extra="forbid"), so a
typo is still caught.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from hydralm.generator import SamplingOptions
from serving.config import RequestLimits
from serving.errors import InvalidRequest
from serving.openai_fields import FIELDS
from serving.protocol import Str, UserId

__all__ = [
    "ChatCompletionRequest",
    "ChatCompletionResponse",
    "ChatMessage",
    "CompletionRequest",
    "CompletionResponse",
    "HydraInfo",
    "StreamOptions",
    "Usage",
]


Obj = dict[str, Any]


class _Request(BaseModel):
    """Unknown fields are refused; types are strict (no "3" for 3, no 1 for "1")."""

    model_config = ConfigDict(extra="forbid", strict=True)


class _Open(BaseModel):
    """An OpenAI object read only for a few keys; the rest of it is accepted as is."""

    model_config = ConfigDict(extra="allow", strict=True)


class ContentPart(_Open):
    """One part of a message's content; only text (and an assistant's refusal) parts are read."""

    type: Literal["text", "refusal", "image_url", "input_audio", "file"]
    text: Str | None = None
    refusal: Str | None = None


class StreamOptions(_Request):
    include_usage: bool = False
    include_obfuscation: bool | None = None


class ChatMessage(_Request):
    """Any OpenAI message: system, developer, user, assistant (with `tool_calls`, `refusal`,
    `function_call`, `audio`), tool and the deprecated function messages."""

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: Str | list[ContentPart] | None = None
    name: Str | None = Field(None, max_length=256)
    tool_calls: list[Obj] | None = None
    tool_call_id: Str | None = None
    function_call: Obj | None = None
    refusal: Str | None = None
    audio: Obj | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "\n".join(p.text or "" for p in self.content if p.type == "text")
        return self.content or ""


_Stop = Str | list[Str] | None


class _OpenAIRequest(_Request):
    """The fields both routes share."""

    model: Str = Field(..., min_length=1, max_length=256,
                       description="hydralm, or hydralm:<method> for a baseline.")
    user: UserId | None = Field(None, description="Whose personalization; default: the key's "
                                                  "user.")
    n: int | None = Field(None, ge=1, le=128, description="Choices returned, best adapter "
                                                          "score first.")
    max_tokens: int | None = Field(None, ge=1, le=1_000_000)
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    stop: _Stop = None
    seed: int | None = Field(None, ge=-(2**63), lt=2**64)
    frequency_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    presence_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    logit_bias: dict[str, int | float] | None = None

    def choices_wanted(self) -> int:
        return self.n or 1

    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    def _stops(self) -> tuple[str, ...] | None:
        stop = [self.stop] if isinstance(self.stop, str) else self.stop
        if stop is not None and (len(stop) > 4 or not all(stop)):
            raise InvalidRequest(f"stop: at most 4 non-empty strings, got {stop!r}"[:300],
                                 param="stop")
        return tuple(stop) if stop else None

    def sampling_options(self) -> SamplingOptions:
        return SamplingOptions(top_p=self.top_p, stop=self._stops(),
                               frequency_penalty=self.frequency_penalty,
                               presence_penalty=self.presence_penalty)

    def _common_refusals(self) -> None:
        self._stops()
        if self.logit_bias:
            _refuse("logit_bias")


def _refuse(name: str) -> None:
    raise InvalidRequest(f"{name}: not supported here ({FIELDS[name].note})", param=name,
                         code="unsupported_value")


def _check_generation(n: int, max_tokens: int | None, limits: RequestLimits,
                      param: str = "max_tokens") -> None:
    if n > limits.max_n:
        raise InvalidRequest(f"n: at most {limits.max_n}, got {n}", param="n")
    if max_tokens is not None and max_tokens > limits.max_tokens:
        raise InvalidRequest(f"{param}: at most {limits.max_tokens}, got {max_tokens}",
                             param=param)


def _check_len(value: str, limit: int, param: str) -> None:
    if len(value) > limit:
        raise InvalidRequest(f"{param}: longer than limits.max_text_chars ({limit}), got "
                             f"{len(value)} characters", param=param, code="too_long")


class ChatCompletionRequest(_OpenAIRequest):
    """POST /v1/chat/completions. The last user message is the query input."""

    messages: list[ChatMessage] = Field(..., min_length=1, max_length=1024)
    max_completion_tokens: int | None = Field(None, ge=1, le=1_000_000)
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    tools: list[Obj] | None = None
    tool_choice: Literal["none", "auto", "required"] | Obj | None = None
    parallel_tool_calls: bool | None = None
    functions: list[Obj] | None = None
    function_call: Literal["none", "auto"] | Obj | None = None
    response_format: Obj | None = None
    audio: Obj | None = None
    modalities: list[Literal["text", "audio"]] | None = None
    moderation: Obj | None = None
    web_search_options: Obj | None = None
    metadata: dict[str, Str] | None = None
    store: bool | None = None
    service_tier: Str | None = None
    prediction: Obj | None = None
    prompt_cache_key: Str | None = None
    prompt_cache_options: Obj | None = None
    prompt_cache_retention: Str | None = None
    reasoning_effort: Str | None = None
    safety_identifier: Str | None = None
    verbosity: Str | None = None

    def query(self) -> str:
        for i in range(len(self.messages) - 1, -1, -1):
            if self.messages[i].role == "user":
                text = self.messages[i].text()
                if not text.strip():
                    raise InvalidRequest(f"messages.{i}.content: the last user message is empty",
                                         param=f"messages.{i}.content")
                return text
        raise InvalidRequest("messages: no message has role 'user' (its content is the query)",
                             param="messages")

    def token_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    def refusals(self) -> None:
        """A 400 naming the first field whose value cannot be honoured (see FIELDS)."""
        self._common_refusals()
        for name, refused in [
                ("logprobs", self.logprobs), ("top_logprobs", bool(self.top_logprobs)),
                ("tool_choice", isinstance(self.tool_choice, dict)
                 or self.tool_choice == "required"),
                ("function_call", isinstance(self.function_call, dict)),
                ("response_format", self.response_format is not None
                 and self.response_format.get("type") != "text"),
                ("audio", self.audio is not None),
                ("modalities", "audio" in (self.modalities or [])),
                ("moderation", self.moderation is not None),
                ("web_search_options", self.web_search_options is not None)]:
            if refused:
                _refuse(name)
        for i, m in enumerate(self.messages):
            for j, part in enumerate(m.content if isinstance(m.content, list) else []):
                if part.type not in ("text", "refusal"):
                    raise InvalidRequest(
                        f"messages.{i}.content.{j}.type: {part.type!r} parts are not read "
                        "(the models read text only)", param=f"messages.{i}.content.{j}.type",
                        code="unsupported_value")

    def check_limits(self, limits: RequestLimits) -> None:
        _check_generation(self.choices_wanted(), self.token_limit(), limits,
                          "max_completion_tokens" if self.max_completion_tokens else "max_tokens")
        for i, m in enumerate(self.messages):
            _check_len(m.text(), limits.max_text_chars, f"messages.{i}.content")


class CompletionRequest(_OpenAIRequest):
    """POST /v1/completions. The prompt is the query input (one prompt per request)."""

    prompt: Str | list[Str]
    best_of: int | None = Field(None, ge=1, le=128)
    echo: bool | None = False
    logprobs: int | None = Field(None, ge=0, le=5)
    suffix: Str | None = None

    def query(self) -> str:
        prompts = [self.prompt] if isinstance(self.prompt, str) else self.prompt
        if len(prompts) != 1:
            raise InvalidRequest(f"prompt: exactly one prompt per request, got {len(prompts)}",
                                 param="prompt")
        if not prompts[0].strip():
            raise InvalidRequest("prompt: must not be empty", param="prompt")
        return prompts[0]

    def refusals(self) -> None:
        self._common_refusals()
        if self.logprobs is not None:
            _refuse("logprobs")
        if self.suffix:
            _refuse("suffix")

    def check_limits(self, limits: RequestLimits) -> None:
        _check_generation(self.choices_wanted(), self.max_tokens, limits)
        _check_len(self.query(), limits.max_text_chars, "prompt")


# ---- responses ---------------------------------------------------------------------------------

FinishReason = Literal["stop", "length", "content_filter", "tool_calls"]


class HydraInfo(BaseModel):
    """The `hydra` extension of OpenAI-shaped responses: how the answer was personalized."""

    user: str
    method: str
    head: Literal["user", "zero_fit", "global", "none"] = Field(
        ..., description="user: the user's own heads served; zero_fit: the user has history and "
                         "no head yet, and zero-fit heads (training users' heads mixed by the "
                         "history) served; global: the global heads served (an unseen user); "
                         "none: the method used no head.")
    heads: dict[str, str] = Field(default_factory=dict, description="Head per model kind.")
    prompt_item_ids: list[str] = Field(default_factory=list)
    adapter_scores: list[float] = Field(default_factory=list)
    selection: Literal["adapter", "fallback", ""] = Field(
        "", description="How the answer was chosen among the candidates: adapter (the adapter's "
                        "pick), fallback (its scores were too close to call: selection_fallback "
                        "picked), empty for methods that sample one answer.")
    timings_ms: dict[str, float] = Field(default_factory=dict)


class Usage(BaseModel):
    """The generator's token counts for the whole request: every call the pipeline made, all N
    candidates' completion tokens (not only the returned ones)."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int

    @classmethod
    def of(cls, prompt_tokens: int, completion_tokens: int) -> Usage:
        return cls(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                   total_tokens=prompt_tokens + completion_tokens)


class _AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str
    refusal: None = None


class _ChatChoice(BaseModel):
    index: int
    message: _AssistantMessage
    finish_reason: FinishReason = "stop"
    logprobs: None = None


def _chat_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def _cmpl_id() -> str:
    return f"cmpl-{uuid.uuid4().hex}"


def _now() -> int:
    return int(time.time())


class ChatCompletionResponse(BaseModel):
    id: str = Field(default_factory=_chat_id)
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=_now)
    model: str
    choices: list[_ChatChoice]
    usage: Usage
    system_fingerprint: None = None
    hydra: HydraInfo

    @classmethod
    def of(cls, model: str, texts: list[str], reasons: list[str], usage: Usage,
           hydra: HydraInfo) -> ChatCompletionResponse:
        return cls(model=model, hydra=hydra, usage=usage, choices=[
            _ChatChoice(index=i, message=_AssistantMessage(content=t), finish_reason=r)
            for i, (t, r) in enumerate(zip(texts, reasons, strict=True))])


class _CompletionChoice(BaseModel):
    index: int
    text: str
    finish_reason: FinishReason = "stop"
    logprobs: None = None


class CompletionResponse(BaseModel):
    id: str = Field(default_factory=_cmpl_id)
    object: Literal["text_completion"] = "text_completion"
    created: int = Field(default_factory=_now)
    model: str
    choices: list[_CompletionChoice]
    usage: Usage
    system_fingerprint: None = None
    hydra: HydraInfo

    @classmethod
    def of(cls, model: str, texts: list[str], reasons: list[str], usage: Usage,
           hydra: HydraInfo) -> CompletionResponse:
        return cls(model=model, hydra=hydra, usage=usage, choices=[
            _CompletionChoice(index=i, text=t, finish_reason=r)
            for i, (t, r) in enumerate(zip(texts, reasons, strict=True))])
