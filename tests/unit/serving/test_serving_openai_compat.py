"""OpenAI compatibility without Ray: every request field of the `openai` SDK is accepted, the
compatibility table of docs/serving.md is the code's (FIELDS), refused values are 400s naming the
field, and the SSE framing and the per-key rate limits behave as documented."""

from __future__ import annotations

import asyncio
import json
import re
import typing
from pathlib import Path

import pytest
from pydantic import ValidationError

from serving.errors import InvalidRequest, map_exception
from serving.openai_fields import CHAT_ONLY, COMPLETIONS_ONLY, FIELDS
from serving.openai_protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    HydraInfo,
    Usage,
)
from serving.ratelimit import RateLimit, RateLimited, RateLimiter
from serving.streaming import DONE, ChunkWriter, Completed, _events, split_text

DOCS = Path(__file__).resolve().parents[3] / "docs" / "serving.md"
CHAT = {"model": "hydralm", "messages": [{"role": "user", "content": "hi"}]}
TEXT = {"model": "hydralm", "prompt": "hi"}

# A value of each field that a client may send and that is accepted (for `refused` fields, a
# neutral value), and for each `refused` field the values that are a 400.
ACCEPTED = {
    "audio": None, "best_of": 3, "echo": True, "frequency_penalty": 0.5,
    "function_call": "auto", "functions": [{"name": "f", "parameters": {}}],
    "logit_bias": {}, "logprobs": None, "max_completion_tokens": 8, "max_tokens": 8,
    "messages": [{"role": "system", "content": "be brief"},
                 {"role": "user", "content": [{"type": "text", "text": "hi"}]},
                 {"role": "assistant", "content": None, "refusal": None, "tool_calls": [
                     {"id": "c1", "type": "function",
                      "function": {"name": "f", "arguments": "{}"}}]},
                 {"role": "tool", "tool_call_id": "c1", "content": "42"},
                 {"role": "user", "content": "and now?"}],
    "metadata": {"k": "v"}, "modalities": ["text"], "model": "hydralm", "moderation": None,
    "n": 2, "parallel_tool_calls": False, "prediction": {"type": "content", "content": "x"},
    "presence_penalty": -0.5, "prompt": ["one prompt"], "prompt_cache_key": "k",
    "prompt_cache_options": {"ttl": "30m"}, "prompt_cache_retention": "24h",
    "reasoning_effort": "low", "response_format": {"type": "text"}, "safety_identifier": "s",
    "seed": 7, "service_tier": "auto", "stop": ["\n", "END"], "store": False, "stream": True,
    "stream_options": {"include_usage": True, "include_obfuscation": False}, "suffix": "",
    "temperature": 0, "tool_choice": "none",
    "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
    "top_logprobs": 0, "top_p": 0.9, "user": "alice", "verbosity": "low",
    "web_search_options": None,
}
REFUSED = {
    "audio": {"voice": "alloy", "format": "wav"},
    "function_call": {"name": "f"},
    "logit_bias": {"50256": -100},
    "logprobs": True,
    "modalities": ["text", "audio"],
    "moderation": {"model": "omni-moderation-latest"},
    "response_format": {"type": "json_object"},
    "suffix": "the end",
    "tool_choice": "required",
    "top_logprobs": 2,
    "web_search_options": {},
}
REFUSED_COMPLETIONS = {"logprobs": 2}  # an int there


def _endpoints(name: str) -> list[type]:
    if name in CHAT_ONLY:
        return [ChatCompletionRequest]
    if name in COMPLETIONS_ONLY:
        return [CompletionRequest]
    return [ChatCompletionRequest, CompletionRequest]


def _body(model: type, name: str, value) -> dict:
    return {**(CHAT if model is ChatCompletionRequest else TEXT), name: value}


def test_every_field_of_the_openai_sdk_requests_is_a_field_here():
    from openai.types import completion_create_params
    from openai.types.chat import completion_create_params as chat_params

    sdk_chat = set(typing.get_type_hints(chat_params.CompletionCreateParamsBase)) | {"stream"}
    sdk_text = set(typing.get_type_hints(completion_create_params.CompletionCreateParamsBase)) | {
        "stream"}
    assert sdk_chat <= set(ChatCompletionRequest.model_fields), sdk_chat - set(
        ChatCompletionRequest.model_fields)
    assert sdk_text <= set(CompletionRequest.model_fields), sdk_text - set(
        CompletionRequest.model_fields)


def test_the_table_covers_exactly_the_request_fields():
    fields = set(ChatCompletionRequest.model_fields) | set(CompletionRequest.model_fields)
    assert set(FIELDS) == fields
    assert set(ChatCompletionRequest.model_fields) == set(FIELDS) - COMPLETIONS_ONLY
    assert set(CompletionRequest.model_fields) == set(FIELDS) - CHAT_ONLY
    assert set(ACCEPTED) == fields
    assert set(REFUSED) == {n for n, p in FIELDS.items() if p.status == "refused"}


def _docs_table() -> dict[str, tuple[str, str, str]]:
    """{field: (endpoints, status, note)} from the compatibility table of docs/serving.md."""
    text = DOCS.read_text(encoding="utf-8")
    section = text.split("### Compatibility table", 1)[1].split("\n#", 1)[0]
    rows = {}
    for line in section.splitlines():
        m = re.fullmatch(r"\| `(\w+)` \| (chat|completions|both) \| (\w+) \| (.*) \|", line)
        if m:
            rows[m[1]] = (m[2], m[3], m[4])
    return rows


def test_docs_compatibility_table_matches_the_code():
    rows = _docs_table()
    assert set(rows) == set(FIELDS), set(rows) ^ set(FIELDS)
    for name, policy in FIELDS.items():
        where = "chat" if name in CHAT_ONLY else "completions" if name in COMPLETIONS_ONLY \
            else "both"
        assert rows[name] == (where, policy.status, policy.note), name


@pytest.mark.parametrize("name", sorted(FIELDS))
def test_each_field_is_accepted_with_a_client_value(name):
    for model in _endpoints(name):
        req = model.model_validate(_body(model, name, ACCEPTED[name]))
        req.refusals()
        req.sampling_options()


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refused_values_are_a_400_naming_the_field(name):
    for model in _endpoints(name):
        with pytest.raises(InvalidRequest) as info:
            value = REFUSED_COMPLETIONS.get(name, REFUSED[name]) if model is CompletionRequest \
                else REFUSED[name]
            model.model_validate(_body(model, name, value)).refusals()
        mapped = map_exception(info.value)
        assert (mapped.status, mapped.param, mapped.code) == (400, name, "unsupported_value")


@pytest.mark.parametrize("body, param", [
    ({**CHAT, "temprature": 0.2}, "temprature"),
    ({**CHAT, "messages": [{"role": "user", "content": "x", "colour": "red"}]},
     "messages.0.colour"),
    ({**TEXT, "max_completion_tokens": 5}, "max_completion_tokens"),  # a chat-only field
    ({**CHAT, "stream_options": {"include_usage": True, "x": 1}}, "stream_options.x"),
])
def test_fields_openai_does_not_define_are_still_refused(body, param):
    model = CompletionRequest if "prompt" in body else ChatCompletionRequest
    with pytest.raises(ValidationError) as info:
        model.model_validate(body)
    mapped = map_exception(info.value)
    assert (mapped.status, mapped.param, mapped.code) == (400, param, "unknown_field")


def test_sampling_options_carry_what_goes_to_the_generator():
    req = ChatCompletionRequest.model_validate({**CHAT, "stop": "END", "top_p": 0.5,
                                                "frequency_penalty": 1, "seed": 3})
    opts = req.sampling_options()
    assert (opts.stop, opts.top_p, opts.frequency_penalty) == (("END",), 0.5, 1)


# ---- streaming framing ---------------------------------------------------------------------

@pytest.mark.parametrize("text", ["", "sci-fi", "a  b\nc ", "  lead", "one two three"])
def test_split_text_joins_back(text):
    assert "".join(split_text(text)) == text


def _decode(frames: list[bytes]) -> list:
    out = []
    for frame in frames:
        assert frame.startswith(b"data: ") and frame.endswith(b"\n\n"), frame
        payload = frame[6:-2]
        out.append("[DONE]" if payload == b"[DONE]" else json.loads(payload))
    return out


def _collect(writer: ChunkWriter, n: int, run) -> list:
    errors: list = []

    async def go():
        return [f async for f in _events(writer, n, run, errors.append)]

    return _decode(asyncio.run(go())), errors


DONE_ANSWER = Completed(texts=["sci-fi robots", "drama"], finish_reasons=["stop", "length"],
                        usage=Usage.of(30, 12),
                        hydra=HydraInfo(user="alice", method="hydra", head="user"))


async def _answer():
    yield DONE_ANSWER


def test_chat_stream_frames_role_content_finish_usage_done():
    events, errors = _collect(ChunkWriter("chat", "hydralm", include_usage=True), 2, _answer)
    assert events[-1] == "[DONE]" and not errors
    chunks = events[:-1]
    assert all(c["object"] == "chat.completion.chunk" and c["usage"] is None
               for c in chunks[:-1])
    assert [c["choices"][0]["delta"] for c in chunks[:2]] == [
        {"role": "assistant", "content": ""}] * 2
    for i, want in enumerate(DONE_ANSWER.texts):
        mine = [c["choices"][0] for c in chunks if c["choices"] and c["choices"][0]["index"] == i]
        assert "".join(c["delta"].get("content", "") for c in mine) == want
        assert [c["finish_reason"] for c in mine if c["finish_reason"]] == [
            DONE_ANSWER.finish_reasons[i]]
    assert chunks[-2]["hydra"]["user"] == "alice"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == {
        "prompt_tokens": 30, "completion_tokens": 12, "total_tokens": 42}
    assert len({c["id"] for c in chunks}) == 1


def test_text_stream_without_usage_has_no_usage_key():
    events, _ = _collect(ChunkWriter("text", "hydralm", include_usage=False), 2, _answer)
    chunks = events[:-1]
    assert all(c["object"] == "text_completion" and "usage" not in c for c in chunks)
    assert "".join(c["choices"][0]["text"] for c in chunks
                   if c["choices"][0]["index"] == 0) == "sci-fi robots"


def test_live_pieces_are_sent_as_they_come_and_not_again():
    async def live():
        yield "sci-fi"
        yield " robots"
        yield Completed(texts=["sci-fi robots"], finish_reasons=["stop"], usage=Usage.of(3, 2),
                        hydra=HydraInfo(user="alice", method="zero_shot", head="none"))

    events, _ = _collect(ChunkWriter("chat", "hydralm", include_usage=False), 1, live)
    contents = [c["choices"][0]["delta"].get("content") for c in events[:-1]]
    assert contents == ["", "sci-fi", " robots", None]
    assert events[-2]["choices"][0]["finish_reason"] == "stop"


def test_an_error_after_the_stream_opened_is_an_error_event_then_done():
    from hydralm.generator import GeneratorUnavailable

    async def fail():
        raise GeneratorUnavailable("connection refused", attempts=3, url="http://127.0.0.1:9")
        yield  # an async generator, as the routes' sources are

    events, errors = _collect(ChunkWriter("chat", "hydralm", include_usage=False), 1, fail)
    assert events[0]["choices"][0]["delta"]["role"] == "assistant"
    assert events[1]["error"]["code"] == "generator_unavailable" and events[2] == "[DONE]"
    assert errors == ["generator_unavailable"]
    assert DONE == b"data: [DONE]\n\n"


# ---- rate limits --------------------------------------------------------------------------

class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_requests_per_second_with_burst_then_refill():
    clock, limit = Clock(), RateLimit(requests_per_s=2, burst=3)
    limiter = RateLimiter(clock)
    for _ in range(3):
        limiter.admit("k", limit)
    with pytest.raises(RateLimited) as info:
        limiter.admit("k", limit)
    assert info.value.kind == "requests" and info.value.retry_after_s == pytest.approx(0.5)
    limiter.admit("other", limit)  # buckets are per key
    clock.now += 0.5
    limiter.admit("k", limit)


def test_tokens_per_minute_admits_until_in_debt_and_says_when():
    clock, limit = Clock(), RateLimit(tokens_per_min=600)  # 10 tokens/s
    limiter = RateLimiter(clock)
    limiter.admit("k", limit)
    limiter.spend_tokens("k", limit, 650)  # 50 in debt
    with pytest.raises(RateLimited) as info:
        limiter.admit("k", limit)
    mapped = map_exception(info.value)
    assert (mapped.status, mapped.type, mapped.code) == (429, "tokens", "rate_limit_exceeded")
    assert mapped.retry_after_s == pytest.approx(5.0)
    clock.now += 5.1
    limiter.admit("k", limit)


def test_no_limit_admits_everything():
    limiter = RateLimiter(Clock())
    for _ in range(1000):
        limiter.admit("k", RateLimit())
    limiter.spend_tokens("k", RateLimit(), 10**9)


def test_burst_without_a_rate_is_a_config_error():
    with pytest.raises(ValidationError, match="burst needs requests_per_s"):
        RateLimit(burst=3)
