"""Request and response bodies of the HTTP API (pydantic), OpenAI-shaped where OpenAI has a route.

Requests reject unknown fields, so a typo or an unsupported OpenAI parameter is a 400 naming it,
never silently ignored. Static bounds live on the fields; bounds that come from the config
(`RequestLimits`) are checked by each request's `check_limits`, which names the field too.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from hydralm.data.schema import PROFILE_FIELDS
from hydralm.history import MAX_USER_ID_LENGTH
from serving.config import RequestLimits
from serving.errors import InvalidRequest

__all__ = [
    "ChatCompletionRequest",
    "ChatCompletionResponse",
    "ChatMessage",
    "CompletionRequest",
    "CompletionResponse",
    "HistoryAppendRequest",
    "HistoryAppendResponse",
    "HydraInfo",
    "ModelCard",
    "ModelList",
    "PersonalizeRequest",
    "PersonalizeResponse",
    "RerankRequest",
    "RerankResponse",
    "ScoreRequest",
    "ScoreResponse",
    "check_unicode",
    "check_user_id",
    "validate_history_items",
]

# Letters, digits and _ . : @ + - ; not starting with '.' or '-'. Ids never become paths, but a
# conservative alphabet keeps them safe in headers, logs, file names and metrics labels alike.
_USER_ID = re.compile(r"[A-Za-z0-9_@][A-Za-z0-9_.:@+-]*")


def check_user_id(value: str) -> str:
    """A user id the API accepts, else ValueError naming it."""
    if not value or len(value) > MAX_USER_ID_LENGTH:
        raise ValueError(f"user id must have 1 to {MAX_USER_ID_LENGTH} characters, "
                         f"got {len(value)}")
    if not _USER_ID.fullmatch(value):
        raise ValueError("user id may contain only letters, digits and _ . : @ + - and must not "
                         f"start with '.' or '-', got {value!r}")
    return value


def check_unicode(value: str) -> str:
    """Text that is valid Unicode, else ValueError: JSON's \\uD800-style escapes can carry lone
    surrogates, which no tokenizer, store or UTF-8 encoder accepts further down."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"must be valid Unicode text, got a lone surrogate at character "
                         f"{exc.start}") from exc
    return value


UserId = Annotated[str, AfterValidator(check_user_id)]
Str = Annotated[str, AfterValidator(check_unicode)]
Text = Annotated[str, Field(min_length=1), AfterValidator(check_unicode)]


class _Request(BaseModel):
    """Unknown fields are refused; types are strict (no "3" for 3, no 1 for "1")."""

    model_config = ConfigDict(extra="forbid", strict=True)


def _check_len(value: str | None, limit: int, param: str) -> None:
    if value is not None and len(value) > limit:
        raise InvalidRequest(f"{param}: longer than limits.max_text_chars ({limit}), got "
                             f"{len(value)} characters", param=param, code="too_long")


def _check_generation(n: int, max_tokens: int | None, limits: RequestLimits) -> None:
    if n > limits.max_n:
        raise InvalidRequest(f"n: at most {limits.max_n}, got {n}", param="n")
    if max_tokens is not None and max_tokens > limits.max_tokens:
        raise InvalidRequest(f"max_tokens: at most {limits.max_tokens}, got {max_tokens}",
                             param="max_tokens")


class TextPart(_Request):
    type: Literal["text"]
    text: Str


class ChatMessage(_Request):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Str | list[TextPart] | None = None
    name: Str | None = Field(None, max_length=256)

    def text(self) -> str:
        if isinstance(self.content, list):
            return "\n".join(p.text for p in self.content)
        return self.content or ""


class _OpenAIRequest(_Request):
    model: Str = Field(..., min_length=1, max_length=256,
                       description="hydralm, or hydralm:<method> for a baseline.")
    user: UserId | None = Field(None, description="Whose personalization; default: the key's user.")
    n: int = Field(1, ge=1, le=128, description="Choices returned, best adapter score first.")
    max_tokens: int | None = Field(None, ge=1, le=1_000_000)
    stream: bool = False

    @model_validator(mode="after")
    def _no_streaming(self) -> _OpenAIRequest:
        if self.stream:
            raise InvalidRequest("stream: streaming is not implemented; send stream: false",
                                 param="stream", code="unsupported_value")
        return self


class ChatCompletionRequest(_OpenAIRequest):
    """POST /v1/chat/completions. The last user message is the query input."""

    messages: list[ChatMessage] = Field(..., min_length=1, max_length=1024)
    max_completion_tokens: int | None = Field(None, ge=1, le=1_000_000)

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

    def check_limits(self, limits: RequestLimits) -> None:
        _check_generation(self.n, self.token_limit(), limits)
        for i, m in enumerate(self.messages):
            _check_len(m.text(), limits.max_text_chars, f"messages.{i}.content")


class CompletionRequest(_OpenAIRequest):
    """POST /v1/completions. The prompt is the query input (one prompt per request)."""

    prompt: Str | list[Str]

    def query(self) -> str:
        prompts = [self.prompt] if isinstance(self.prompt, str) else self.prompt
        if len(prompts) != 1:
            raise InvalidRequest(f"prompt: exactly one prompt per request, got {len(prompts)}",
                                 param="prompt")
        if not prompts[0].strip():
            raise InvalidRequest("prompt: must not be empty", param="prompt")
        return prompts[0]

    def check_limits(self, limits: RequestLimits) -> None:
        _check_generation(self.n, self.max_tokens, limits)
        _check_len(self.query(), limits.max_text_chars, "prompt")


class PersonalizeRequest(_Request):
    """POST /v1/personalize: the answer and everything that led to it."""

    user: UserId | None = None
    input: Text = Field(..., description="The query input, as the task's records hold it.")
    method: Str | None = Field(None, description="Pipeline method; default: the server's.")
    n_candidates: int | None = Field(None, ge=1, le=128, description="Samples (N).")
    max_tokens: int | None = Field(None, ge=1, le=1_000_000)

    def check_limits(self, limits: RequestLimits) -> None:
        if self.n_candidates is not None and self.n_candidates > limits.max_n:
            raise InvalidRequest(f"n_candidates: at most {limits.max_n}, got "
                                 f"{self.n_candidates}", param="n_candidates")
        _check_generation(1, self.max_tokens, limits)
        _check_len(self.input, limits.max_text_chars, "input")


class RerankRequest(_Request):
    """POST /v1/rerank: reranker scores of (query, item) pairs with the user's head. Give either
    `items` (history-item objects) or `item_ids` (ids in the user's stored history)."""

    user: UserId | None = None
    query: Text
    items: list[dict[str, Any]] | None = Field(None, min_length=1)
    item_ids: list[Text] | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _one_source(self) -> RerankRequest:
        if (self.items is None) == (self.item_ids is None):
            raise InvalidRequest("items: give exactly one of items or item_ids", param="items")
        return self

    def check_limits(self, limits: RequestLimits) -> None:
        count = len(self.items or self.item_ids or [])
        if count > limits.max_rerank_items:
            param = "items" if self.items is not None else "item_ids"
            raise InvalidRequest(f"{param}: at most {limits.max_rerank_items} per request, got "
                                 f"{count}", param=param)
        _check_len(self.query, limits.max_text_chars, "query")


class ScoreRequest(_Request):
    """POST /v1/score: adapter scores of (prompt, candidate) pairs with the user's head."""

    user: UserId | None = None
    prompt: Text
    candidates: list[Str] = Field(..., min_length=1)

    def check_limits(self, limits: RequestLimits) -> None:
        if len(self.candidates) > limits.max_score_candidates:
            raise InvalidRequest(f"candidates: at most {limits.max_score_candidates} per request, "
                                 f"got {len(self.candidates)}", param="candidates")
        _check_len(self.prompt, limits.max_text_chars, "prompt")
        for i, c in enumerate(self.candidates):
            _check_len(c, limits.max_text_chars, f"candidates.{i}")


class HistoryAppendRequest(_Request):
    """POST /v1/users/{user_id}/history: items in the task's profile-item shape."""

    items: list[dict[str, Any]] = Field(..., min_length=1)


def validate_history_items(items: list[dict[str, Any]], task: str, limits: RequestLimits, *,
                           max_items: int, param: str = "items") -> list[dict[str, str]]:
    """History items as the store keeps them: `id` plus the task's fields (strings; LaMP-3's
    score may be a number), optional `date`; unknown keys and duplicate ids are errors."""
    if len(items) > max_items:
        raise InvalidRequest(f"{param}: at most {max_items} per request, got {len(items)}",
                             param=param)
    fields = PROFILE_FIELDS[task]
    allowed = {"id", "date", *fields}
    seen: set[str] = set()
    out = []
    for i, item in enumerate(items):
        where = f"{param}.{i}"
        unknown = sorted(set(item) - allowed)
        if unknown:
            raise InvalidRequest(f"{where}.{unknown[0]}: unknown field; task {task} items have "
                                 f"{sorted(allowed)}", param=f"{where}.{unknown[0]}",
                                 code="unknown_field")
        clean = {"id": _item_text(item, "id", where, limits, numeric=False)}
        if clean["id"] in seen:
            raise InvalidRequest(f"{where}.id: duplicate id {clean['id']!r} in this request",
                                 param=f"{where}.id")
        seen.add(clean["id"])
        for name in fields:
            clean[name] = _item_text(item, name, where, limits, numeric=(task, name) == (
                "LaMP-3", "score"))
        if "date" in item:
            clean["date"] = _item_text(item, "date", where, limits, numeric=False)
        out.append(clean)
    return out


def _item_text(item: dict[str, Any], name: str, where: str, limits: RequestLimits, *,
               numeric: bool) -> str:
    param = f"{where}.{name}"
    if name not in item:
        raise InvalidRequest(f"{param}: field required", param=param, code="missing_field")
    value = item[name]
    if numeric and isinstance(value, int | float) and not isinstance(value, bool):
        # str(int) directly: float() of a huge JSON integer would overflow
        value = str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)
    if not isinstance(value, str) or (name == "id" and not value):
        raise InvalidRequest(f"{param}: must be a {'non-empty ' if name == 'id' else ''}string, "
                             f"got {type(value).__name__}", param=param)
    _check_len(value, limits.max_text_chars, param)
    if "\x00" in value:
        raise InvalidRequest(f"{param}: must not contain NUL characters", param=param)
    try:
        check_unicode(value)
    except ValueError as exc:
        raise InvalidRequest(f"{param}: {exc}", param=param) from exc
    return value


# ---- responses ---------------------------------------------------------------------------------

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


class _AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class _ChatChoice(BaseModel):
    index: int
    message: _AssistantMessage
    finish_reason: Literal["stop", "length"] = "stop"
    logprobs: None = None


class ChatCompletionResponse(BaseModel):
    id: str = Field(default_factory=lambda: f"chatcmpl-{uuid.uuid4().hex}")
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[_ChatChoice]
    usage: None = Field(None, description="Token counts are not tracked (several LLM calls).")
    hydra: HydraInfo

    @classmethod
    def of(cls, model: str, texts: list[str], hydra: HydraInfo) -> ChatCompletionResponse:
        return cls(model=model, hydra=hydra, choices=[
            _ChatChoice(index=i, message=_AssistantMessage(content=t)) for i, t in enumerate(texts)])


class _CompletionChoice(BaseModel):
    index: int
    text: str
    finish_reason: Literal["stop", "length"] = "stop"
    logprobs: None = None


class CompletionResponse(BaseModel):
    id: str = Field(default_factory=lambda: f"cmpl-{uuid.uuid4().hex}")
    object: Literal["text_completion"] = "text_completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[_CompletionChoice]
    usage: None = None
    hydra: HydraInfo

    @classmethod
    def of(cls, model: str, texts: list[str], hydra: HydraInfo) -> CompletionResponse:
        return cls(model=model, hydra=hydra, choices=[
            _CompletionChoice(index=i, text=t) for i, t in enumerate(texts)])


class Candidate(BaseModel):
    text: str
    score: float | None = Field(None, description="Adapter score (None: not scored).")


class PersonalizeResponse(BaseModel):
    user: str
    method: str
    answer: str
    head: Literal["user", "global", "none"]
    heads: dict[str, str]
    retrieved_ids: list[str]
    rerank_scores: list[float]
    prompt_item_ids: list[str]
    prompt: str
    candidates: list[Candidate]
    timings_ms: dict[str, float]


class RerankResponse(BaseModel):
    user: str
    head: Literal["user", "global"]
    scores: list[float] = Field(..., description="One per item, in request order.")
    ranking: list[int] = Field(..., description="Item indices, best first.")
    item_ids: list[str]


class ScoreResponse(BaseModel):
    user: str
    head: Literal["user", "global"]
    scores: list[float] = Field(..., description="One per candidate, in request order.")
    best: int = Field(..., description="Index of the best-scoring candidate.")


class HistoryAppendResponse(BaseModel):
    user: str
    appended: int
    history_length: int
    durable: Literal[True] = True


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "hydralm"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
