"""The OpenAI routes' bodies: every field of OpenAI's chat and completions requests is accepted,
and `FIELDS` says what each one does here (the compatibility table of docs/serving.md, which a unit
test checks against these models):

- applied: it changes the answer or the response;
- ignored: accepted, no effect (nothing here has its meaning, and leaving it out misleads nobody);
- refused: its neutral values are accepted; the values in `refused when` would need something
  hydralm does not do, so they are a 400 naming the field (`refusals()`).

Fields OpenAI does not define stay a 400 naming them (extra="forbid"), so a typo is still caught.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from hydralm.generator import SamplingOptions
from serving.config import RequestLimits
from serving.errors import InvalidRequest
from serving.protocol import Str, UserId

__all__ = [
    "CHAT_ONLY",
    "COMPLETIONS_ONLY",
    "FIELDS",
    "ChatCompletionRequest",
    "ChatCompletionResponse",
    "ChatMessage",
    "CompletionRequest",
    "CompletionResponse",
    "FieldPolicy",
    "HydraInfo",
    "StreamOptions",
    "Usage",
]


Obj = dict[str, Any]


@dataclass(frozen=True)
class FieldPolicy:
    """What one request field does here (one row of the compatibility table)."""

    status: Literal["applied", "ignored", "refused"]
    note: str


FIELDS: dict[str, FieldPolicy] = {
    "audio": FieldPolicy("refused", "refused when set: no audio output"),
    "best_of": FieldPolicy("ignored", "HYDRA always draws `n_candidates` and picks by adapter "
                                      "score"),
    "echo": FieldPolicy("applied", "the prompt is put before each choice's text"),
    "frequency_penalty": FieldPolicy("applied", "sent to the generator"),
    "function_call": FieldPolicy("refused", "refused when it names a function; `none` and "
                                            "`auto` accepted (no function is ever called)"),
    "functions": FieldPolicy("ignored", "no function is ever called: the answer is text"),
    "logit_bias": FieldPolicy("refused", "refused when not empty: the generator's token ids "
                                         "are not part of this API"),
    "logprobs": FieldPolicy("refused", "refused when true (chat) or set (completions): the "
                                       "answer is chosen among candidates, without log-probs"),
    "max_completion_tokens": FieldPolicy("applied", "as `max_tokens`, for each candidate"),
    "max_tokens": FieldPolicy("applied", "caps each candidate (`limits.max_tokens`)"),
    "messages": FieldPolicy("applied", "the last `user` message is the query; the other "
                                       "messages (any role, `tool_calls`, `refusal`) are "
                                       "accepted and not used; non-text content parts refused"),
    "metadata": FieldPolicy("ignored", "not stored"),
    "modalities": FieldPolicy("refused", "refused when it holds `audio`; `[\"text\"]` accepted"),
    "model": FieldPolicy("applied", "`hydralm` or `hydralm:<method>`"),
    "moderation": FieldPolicy("refused", "refused when set: no moderation runs here"),
    "n": FieldPolicy("applied", "the `n` best candidates by adapter score"),
    "parallel_tool_calls": FieldPolicy("ignored", "no tool is ever called"),
    "prediction": FieldPolicy("ignored", "a latency hint"),
    "presence_penalty": FieldPolicy("applied", "sent to the generator"),
    "prompt": FieldPolicy("applied", "the query; one string (or a list of one); token-id "
                                     "prompts refused"),
    "prompt_cache_key": FieldPolicy("ignored", "a caching hint"),
    "prompt_cache_options": FieldPolicy("ignored", "a caching hint"),
    "prompt_cache_retention": FieldPolicy("ignored", "a caching hint"),
    "reasoning_effort": FieldPolicy("ignored", "no reasoning model"),
    "response_format": FieldPolicy("refused", "refused unless `{\"type\": \"text\"}`: the answer "
                                              "is the task's output, never JSON"),
    "safety_identifier": FieldPolicy("ignored", "not stored"),
    "seed": FieldPolicy("applied", "never sent to the generator: the same seeded request gets "
                                   "the same candidates (and answer) from the replica's seed "
                                   "memo"),
    "service_tier": FieldPolicy("ignored", "one tier"),
    "stop": FieldPolicy("applied", "sent to the generator (up to 4)"),
    "store": FieldPolicy("ignored", "nothing is stored"),
    "stream": FieldPolicy("applied", "server-sent events; the answer streams once chosen"),
    "stream_options": FieldPolicy("applied", "`include_usage` applied when streaming; "
                                             "`include_obfuscation` ignored"),
    "suffix": FieldPolicy("refused", "refused when not empty: no insertion"),
    "temperature": FieldPolicy("applied", "the one sample's of single-answer methods (default "
                                          "0); adapter methods keep `candidate_temperature`"),
    "tool_choice": FieldPolicy("refused", "refused when `required` or a named tool; `none` "
                                          "and `auto` accepted"),
    "tools": FieldPolicy("ignored", "no tool is ever called: the answer is text"),
    "top_logprobs": FieldPolicy("refused", "refused when above 0"),
    "top_p": FieldPolicy("applied", "sent to the generator"),
    "user": FieldPolicy("applied", "whose personalization (within what the API key allows)"),
    "verbosity": FieldPolicy("ignored", "no effect on a chosen answer"),
    "web_search_options": FieldPolicy("refused", "refused when set: no web search"),
}
# Fields of one endpoint only; every other field of FIELDS is on both.
CHAT_ONLY = frozenset({
    "audio", "function_call", "functions", "max_completion_tokens", "messages", "metadata",
    "modalities", "moderation", "parallel_tool_calls", "prediction", "prompt_cache_key",
    "prompt_cache_options", "prompt_cache_retention", "reasoning_effort", "response_format",
    "safety_identifier", "service_tier", "store", "tool_choice", "tools", "top_logprobs",
    "verbosity", "web_search_options"})
COMPLETIONS_ONLY = frozenset({"best_of", "echo", "prompt", "suffix"})


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
    head: Literal["user", "global", "none"] = Field(
        ..., description="user: the user's own heads served; global: the user has none (unseen "
                         "user) and the global heads served; none: the method used no head.")
    heads: dict[str, str] = Field(default_factory=dict, description="Head per model kind.")
    prompt_item_ids: list[str] = Field(default_factory=list)
    adapter_scores: list[float] = Field(default_factory=list)
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
