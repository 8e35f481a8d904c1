"""Request models: what they accept, what they refuse, and which field a refusal names."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from serving.config import RequestLimits
from serving.errors import InvalidRequest, map_exception
from serving.openai_protocol import ChatCompletionRequest, CompletionRequest
from serving.protocol import (
    PersonalizeRequest,
    RerankRequest,
    ScoreRequest,
    check_user_id,
    validate_history_items,
)

CHAT = {"model": "hydralm", "user": "alice", "messages": [{"role": "user", "content": "hi"}]}
LIMITS = RequestLimits(max_n=4, max_tokens=32, max_text_chars=50, max_history_items=3,
                       max_rerank_items=2, max_score_candidates=2)


def _param(body: dict, model=ChatCompletionRequest, limits=LIMITS) -> str | None:
    """The `param` of the error a body gets (model validation, then the config's limits)."""
    with pytest.raises((ValidationError, InvalidRequest)) as info:
        req = model.model_validate(body)
        if hasattr(req, "refusals"):
            req.refusals()
        req.check_limits(limits)
    mapped = map_exception(info.value)
    assert mapped.status == 400, mapped
    return mapped.param


@pytest.mark.parametrize("user", ["alice", "310", "acme:alice", "u_1.2@x+y-z", "A" * 256])
def test_user_ids_accepted(user):
    assert check_user_id(user) == user


@pytest.mark.parametrize("user", ["", "../x", "a/b", ".hidden", "-x", "a\x00b", "tab\tid",
                                  "sp ace", "A" * 257, "é"])
def test_user_ids_refused(user):
    with pytest.raises(ValueError, match="user id"):
        check_user_id(user)


@pytest.mark.parametrize("change, param", [
    ({"messages": None}, "messages"),
    ({"messages": []}, "messages"),
    ({"user": "../x"}, "user"),
    ({"user": "a\x00b"}, "user"),
    ({"user": 7}, "user"),
    ({"n": 0}, "n"),
    ({"n": 5}, "n"),  # over LIMITS.max_n
    ({"n": "two"}, "n"),
    ({"max_tokens": 33}, "max_tokens"),
    ({"max_completion_tokens": 33}, "max_completion_tokens"),
    ({"temperatur": 0.2}, "temperatur"),  # fields OpenAI does not define are refused
    ({"temperature": 2.5}, "temperature"),
    ({"stream": "yes"}, "stream"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"logit_bias": {"50256": -100}}, "logit_bias"),
    ({"tool_choice": "required"}, "tool_choice"),
    ({"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "http://x/y.png"}}]}]},
     "messages.0.content.0.type"),
    ({"model": ""}, "model"),
    ({"messages": [{"role": "robot", "content": "x"}]}, "messages.0.role"),
    ({"messages": [{"role": "user", "content": 5}]}, "messages.0.content"),
    ({"messages": [{"role": "user", "content": "x", "extra": 1}]}, "messages.0.extra"),
    ({"messages": [{"role": "user", "content": "x" * 51}]}, "messages.0.content"),
])
def test_chat_refusals_name_the_field(change, param):
    body = {**CHAT, **change}
    if change.get("messages") is None and "messages" in change:
        del body["messages"]
    assert _param(body) == param


def test_chat_query_is_the_last_user_message():
    req = ChatCompletionRequest.model_validate({**CHAT, "messages": [
        {"role": "system", "content": "be nice"},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
    ]})
    assert req.query() == "a\nb"


@pytest.mark.parametrize("messages, param", [
    ([{"role": "system", "content": "x"}], "messages"),
    ([{"role": "user", "content": "x"}, {"role": "user", "content": "  "}], "messages.1.content"),
])
def test_chat_without_a_usable_query(messages, param):
    with pytest.raises(InvalidRequest) as info:
        ChatCompletionRequest.model_validate({**CHAT, "messages": messages}).query()
    assert info.value.param == param


@pytest.mark.parametrize("prompt, param", [(["a", "b"], "prompt"), ([], "prompt"), ("", "prompt"),
                                           ("x" * 51, "prompt"), (3, "prompt")])
def test_completion_prompt_refusals(prompt, param):
    body = {"model": "hydralm", "user": "alice", "prompt": prompt}
    assert _param(body, CompletionRequest) == param


def test_completion_single_prompt_list():
    req = CompletionRequest.model_validate({"model": "m", "prompt": ["only"]})
    assert req.query() == "only"


@pytest.mark.parametrize("body, param", [
    ({"user": "a"}, "input"),
    ({"user": "a", "input": ""}, "input"),
    ({"user": "a", "input": "q", "n_candidates": 5}, "n_candidates"),
    ({"user": "a", "input": "q", "max_tokens": 0}, "max_tokens"),
    ({"user": "a", "input": "q", "method": 3}, "method"),
    ({"user": "a", "input": "q", "bogus": 1}, "bogus"),
])
def test_personalize_refusals(body, param):
    assert _param(body, PersonalizeRequest) == param


@pytest.mark.parametrize("body, param", [
    ({"user": "a", "query": "q"}, "items"),  # neither source
    ({"user": "a", "query": "q", "items": [{"id": "1"}], "item_ids": ["1"]}, "items"),  # both
    ({"user": "a", "query": "q", "item_ids": []}, "item_ids"),
    ({"user": "a", "query": "q", "item_ids": ["1", "2", "3"]}, "item_ids"),
    ({"user": "a", "query": "q", "item_ids": [""]}, "item_ids.0"),
    ({"user": "a", "query": "", "item_ids": ["1"]}, "query"),
])
def test_rerank_refusals(body, param):
    assert _param(body, RerankRequest) == param


@pytest.mark.parametrize("body, param", [
    ({"user": "a", "query": "q", "prompt": "p", "candidates": []}, "candidates"),
    ({"user": "a", "query": "q", "prompt": "p", "candidates": ["x", "y", "z"]}, "candidates"),
    ({"user": "a", "query": "q", "prompt": "p", "candidates": [1]}, "candidates.0"),
    ({"user": "a", "query": "q", "prompt": "p", "candidates": ["x" * 51]}, "candidates.0"),
    ({"user": "a", "query": "q", "candidates": ["x"]}, "prompt"),
    ({"user": "a", "prompt": "p", "candidates": ["x"]}, "query"),
])
def test_score_refusals(body, param):
    assert _param(body, ScoreRequest) == param


ITEM = {"id": "7", "description": "a film", "tag": "comedy"}


@pytest.mark.parametrize("items, param", [
    ([{**ITEM, "colour": "red"}], "items.0.colour"),
    ([{"id": "7", "tag": "comedy"}], "items.0.description"),
    ([{**ITEM, "tag": 3}], "items.0.tag"),
    ([{**ITEM, "id": ""}], "items.0.id"),
    ([ITEM, ITEM], "items.1.id"),
    ([{**ITEM, "description": "x" * 51}], "items.0.description"),
    ([{**ITEM, "description": "a\x00b"}], "items.0.description"),
    ([dict(ITEM, id=str(i)) for i in range(4)], "items"),
])
def test_history_item_refusals(items, param):
    with pytest.raises(InvalidRequest) as info:
        validate_history_items(items, "synth-tag", LIMITS, max_items=3)
    assert info.value.param == param


def test_history_items_are_normalised():
    out = validate_history_items([{"id": "1", "text": "good", "score": 4.0, "date": "2020"}],
                                 "LaMP-3", LIMITS, max_items=3)
    assert out == [{"id": "1", "text": "good", "score": "4", "date": "2020"}]
