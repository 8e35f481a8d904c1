"""Request and response bodies of the native HTTP API (pydantic); the OpenAI routes' bodies are in
serving/openai_protocol.py.

Requests reject unknown fields, so a typo is a 400 naming it, never silently ignored. Static bounds live on the fields; bounds that come from the config
(`RequestLimits`) are checked by each request's `check_limits`, which names the field too.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from hydralm.data.schema import PROFILE_FIELDS
from hydralm.history import MAX_USER_ID_LENGTH
from serving.config import RequestLimits
from serving.errors import InvalidRequest

__all__ = [
    "HistoryAppendRequest",
    "HistoryAppendResponse",
    "ModelCard",
    "ModelList",
    "PersonalizeRequest",
    "PersonalizeResponse",
    "RerankRequest",
    "RerankResponse",
    "ScoreRequest",
    "ScoreResponse",
    "Str",
    "UserId",
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
    """POST /v1/score: adapter scores of candidates with the user's head. The adapter reads the
    query's text, then the prompt the candidates were sampled from, then each candidate
    (`hydralm.pipeline.adapter_pairs`, as in training)."""

    user: UserId | None = None
    query: Text = Field(..., description="The query input, as the task's records hold it.")
    prompt: Text
    candidates: list[Str] = Field(..., min_length=1)

    def check_limits(self, limits: RequestLimits) -> None:
        if len(self.candidates) > limits.max_score_candidates:
            raise InvalidRequest(f"candidates: at most {limits.max_score_candidates} per request, "
                                 f"got {len(self.candidates)}", param="candidates")
        _check_len(self.query, limits.max_text_chars, "query")
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

class Candidate(BaseModel):
    text: str
    score: float | None = Field(None, description="Adapter score (None: not scored).")


class PersonalizeResponse(BaseModel):
    user: str
    method: str
    answer: str
    head: Literal["user", "zero_fit", "global", "none"]
    heads: dict[str, str]
    retrieved_ids: list[str]
    rerank_scores: list[float]
    prompt_item_ids: list[str]
    prompt: str
    candidates: list[Candidate]
    selection: Literal["adapter", "fallback", ""] = Field(
        "", description="adapter: the adapter's pick; fallback: its scores were too close to "
                        "call and selection_fallback picked; empty: one sampled answer.")
    timings_ms: dict[str, float]


class RerankResponse(BaseModel):
    user: str
    head: Literal["user", "zero_fit", "global"]
    scores: list[float] = Field(..., description="One per item, in request order.")
    ranking: list[int] = Field(..., description="Item indices, best first.")
    item_ids: list[str]


class ScoreResponse(BaseModel):
    user: str
    head: Literal["user", "zero_fit", "global"]
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
