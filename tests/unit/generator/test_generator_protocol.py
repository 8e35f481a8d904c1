"""Request validation, request bodies and response parsing."""

from __future__ import annotations

import pytest

from hydralm.generator.protocol import (
    ChatRequest,
    CompletionRequest,
    SamplingOptions,
    cache_payload,
    parse_finish_reasons,
    parse_texts,
    request_body,
)

HELLO = ({"role": "user", "content": "hi"},)


@pytest.mark.parametrize("kwargs, fragment", [
    ({"n": 0}, "n must be a positive integer"),
    ({"temperature": -0.1}, "temperature"),
    ({"temperature": 2.5}, "temperature"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"top_p": 0.0}, "top_p"),
    ({"choices": ()}, "choices"),
    ({"choices": ("a", "")}, "choices"),
    ({"messages": ()}, "messages"),
    ({"messages": ({"content": "no role"},)}, "messages"),
])
def test_bad_requests_are_rejected(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        ChatRequest(**{"messages": HELLO, **kwargs})


def test_completion_prompt_must_be_text():
    with pytest.raises(ValueError, match="prompt must be a string, got 3"):
        CompletionRequest(prompt=3)


def test_cache_payload_covers_what_decides_the_answer():
    base = cache_payload(ChatRequest(messages=HELLO), model="m", default_max_tokens=16)
    assert base == {"model": "m", "endpoint": "chat/completions", "messages": [dict(HELLO[0])],
                    "n": 1, "temperature": 0.0, "max_tokens": 16, "top_p": None, "choices": None}
    variants = [ChatRequest(messages=HELLO, n=2), ChatRequest(messages=HELLO, temperature=1.0),
                ChatRequest(messages=HELLO, max_tokens=8), ChatRequest(messages=HELLO, top_p=0.5),
                ChatRequest(messages=HELLO, choices=("a",)), CompletionRequest(prompt="hi")]
    payloads = [cache_payload(v, model="m", default_max_tokens=16) for v in variants]
    assert all(p != base for p in payloads)
    assert cache_payload(ChatRequest(messages=HELLO), model="other", default_max_tokens=16) != base


def test_json_schema_choices_need_chat():
    with pytest.raises(ValueError, match="need a chat request"):
        request_body(CompletionRequest(prompt="x", choices=("a",)), model="m", n=1,
                     default_max_tokens=4, style="openai_json_schema")


@pytest.mark.parametrize("data", [
    None, [], {"choices": None}, {"choices": ["x"]}, {"choices": [{"message": None}]},
    {"choices": [{"message": {"content": 3}}]}, {"choices": [{"text": "completion field"}]},
])
def test_malformed_chat_responses_raise_value_error(data):
    with pytest.raises(ValueError):
        parse_texts(ChatRequest(messages=HELLO), data, "vllm")


def test_choices_are_read_in_index_order():
    data = {"choices": [{"index": 1, "text": "b"}, {"index": 0, "text": "a"}]}
    assert parse_texts(CompletionRequest(prompt="x"), data, "vllm") == ["a", "b"]


def test_unparseable_json_answer_keeps_raw_text():
    data = {"choices": [{"message": {"content": "not json"}}]}
    req = ChatRequest(messages=HELLO, choices=("a", "b"))
    assert parse_texts(req, data, "openai_json_schema") == ["not json"]


def test_finish_reasons_in_choice_order_unknown_read_as_stop():
    data = {"choices": [{"index": 2, "text": "c", "finish_reason": None},
                        {"index": 0, "text": "a", "finish_reason": "length"},
                        {"index": 1, "text": "b", "finish_reason": "abort"}]}
    assert parse_finish_reasons(data) == ["length", "stop", "stop"]


@pytest.mark.parametrize("kwargs, fragment", [
    ({"stop": ("a",) * 5}, "stop"), ({"stop": ("",)}, "stop"), ({"top_p": 0.0}, "top_p"),
    ({"frequency_penalty": 2.5}, "frequency_penalty"),
])
def test_sampling_options_are_validated(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        SamplingOptions(**kwargs)


def test_options_enter_the_cache_key_only_when_set():
    plain = ChatRequest(messages=({"role": "user", "content": "q"},))
    same = ChatRequest(messages=plain.messages, options=SamplingOptions())
    stopped = ChatRequest(messages=plain.messages, options=SamplingOptions(stop=("\n",)))
    key = {"model": "m", "default_max_tokens": 8}
    assert cache_payload(plain, **key) == cache_payload(same, **key)
    assert cache_payload(stopped, **key)["stop"] == ["\n"]


def test_stream_lines():
    from hydralm.generator.sse import parse_stream_line

    assert parse_stream_line("") is None and parse_stream_line(": keep-alive") is None
    assert parse_stream_line("data: [DONE]").done
    piece = parse_stream_line('data: {"choices": [{"index": 0, "delta": {"content": "hi"}, '
                              '"finish_reason": "length"}], "usage": {"prompt_tokens": 3, '
                              '"completion_tokens": 1}}')
    assert (piece.text, piece.finish_reason, piece.usage) == ("hi", "length", (3, 1))
    with pytest.raises(ValueError, match="error"):
        parse_stream_line('data: {"error": {"message": "engine dead"}}')
    with pytest.raises(ValueError):
        parse_stream_line("data: {not json")
