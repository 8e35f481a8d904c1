"""What each field of OpenAI's chat and completions requests does here: the compatibility table
of docs/serving.md (a unit test checks the page, the request models of serving/openai_protocol.py
and the `openai` SDK's request types against it).

- applied: it changes the answer or the response;
- ignored: accepted, no effect (nothing here has its meaning, and leaving it out misleads nobody);
- refused: its neutral values are accepted; the values the note names would need something
  hydralm does not do, so they are a 400 naming the field (the requests' `refusals()`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["CHAT_ONLY", "COMPLETIONS_ONLY", "FIELDS", "FieldPolicy"]


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
    "stream": FieldPolicy("applied", "server-sent events: single-answer methods relay the "
                                     "generator's text, adapter methods send the answer once "
                                     "chosen"),
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
