"""The real client against the real embedded vLLM (SmolLM2 on Ray Serve LLM), and the response
cache on a real S3 server (SeaweedFS)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from fixtures_s3 import s3_server  # noqa: F401  (module-scoped SeaweedFS fixture)

from hydralm.generator import ChatRequest, CompletionRequest, GeneratorClient, ResponseCache

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]

QUESTION = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]
LABELS = ["positive", "negative", "neutral"]


def _client(llm_config, base_url, **updates) -> GeneratorClient:
    return GeneratorClient(llm_config.model_copy(update=updates), base_url=base_url)


def _run(client, coro):
    async def closing():
        async with client:
            return await coro
    return asyncio.run(closing())


def test_chat_and_completion_answer(llm_config, llm_base_url):
    client = _client(llm_config, llm_base_url)
    chat = _run(client, client.chat(QUESTION))
    assert len(chat) == 1 and "paris" in chat[0].lower()
    completion = client.generate_sync(CompletionRequest(prompt="The capital of France is",
                                                        max_tokens=8))
    assert len(completion) == 1 and completion[0].strip()
    assert client.stats.prompt_tokens > 0 and client.stats.completion_tokens > 0


def test_eight_samples_at_temperature_one(llm_config, llm_base_url):
    client = _client(llm_config, llm_base_url)
    samples = client.generate_sync(ChatRequest(messages=QUESTION, n=8, temperature=1.0,
                                               max_tokens=12))
    assert len(samples) == 8 and all(isinstance(s, str) for s in samples)
    assert len(set(samples)) > 1  # sampled, not eight copies of the greedy answer
    assert client.stats.requests == 1  # one request asked for all n


def test_temperature_zero_is_deterministic_without_cache(llm_config, llm_base_url):
    client = _client(llm_config, llm_base_url)
    request = ChatRequest(messages=[{"role": "user", "content": "Name a color."}], max_tokens=12)
    assert client.generate_sync(request) == client.generate_sync(request)
    assert client.stats.calls == 2


def test_constrained_choices_return_labels(llm_config, llm_base_url):
    client = _client(llm_config, llm_base_url)
    prompt = [{"role": "user", "content": "Is 'I loved this film' positive, negative or "
                                          "neutral?"}]
    answers = _run(client, client.chat(prompt, n=8, temperature=1.0, choices=LABELS))
    assert len(answers) == 8 and set(answers) <= set(LABELS)
    completion = client.generate_sync(CompletionRequest(prompt="Rating from 1 to 5:",
                                                        choices=("1", "2", "3", "4", "5")))
    assert completion[0] in {"1", "2", "3", "4", "5"}


def test_second_run_is_served_from_the_cache(llm_config, llm_base_url, tmp_path):
    requests = [ChatRequest(messages=[{"role": "user", "content": f"Say a word about {t}."}],
                            n=4, temperature=1.0) for t in ("tea", "rain", "maps")]
    first = _client(llm_config, llm_base_url, cache=str(tmp_path)).run_many(requests)
    again = _client(llm_config, llm_base_url, cache=str(tmp_path))
    assert again.run_many(requests) == first  # temperature-1 samples reproduced exactly
    assert (again.cache.hits, again.cache.misses, again.stats.calls) == (3, 0, 0)


def test_build_llm_app_is_a_serve_application(ray_local, tmp_path):
    from ray.serve import Application

    from serving.llm import build_llm_app

    (tmp_path / "config.json").write_text("{}")
    app = build_llm_app({"model": "tiny", "embedded": {"model_dir": str(tmp_path)}})
    assert isinstance(app, Application)


REUSE = """
import sys
import ray
from hydralm.generator import GeneratorConfig
from training.llm import embedded_generator
ray.init(address=sys.argv[1])
cfg = GeneratorConfig.from_dict({"model": "smollm2", "embedded": {"route_prefix": "/llm"}})
with embedded_generator(cfg) as base_url:
    print(base_url)
"""


def test_a_running_app_is_reused_and_left_running(serve_yaml, llm_config, llm_base_url):
    """A job joining the Ray of `hydralm serve` (configs/serve.yaml) gets the generator app that
    runs there instead of deploying a second one, and leaves it running."""
    # the local Ray of `hydralm serve` checks Ray's token (~/.ray/auth_token) of who joins it
    env = {**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"},
           "RAY_AUTH_MODE": "token"}
    proc = subprocess.run([sys.executable, "-c", REUSE, serve_yaml.ray_address], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=180, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split()[-1] == llm_base_url
    resp = httpx.get(f"{llm_base_url}/models", timeout=10)  # still served after the exit
    assert resp.status_code == 200
    assert [m["id"] for m in resp.json()["data"]] == [llm_config.model]


@pytest.fixture
def s3_endpoint(s3_server, monkeypatch):  # noqa: F811
    """The shared SeaweedFS server (tests/fixtures_s3.py), its credentials in the environment
    and a bucket for the cache."""
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    s3_server.make_bucket("hydralm-cache")
    return s3_server.endpoint


def test_cache_on_s3(s3_endpoint):
    payload = {"model": "m", "endpoint": "completions", "prompt": "p", "n": 2}
    ResponseCache("s3://hydralm-cache/runs/1").put(payload, ["a", "b"])
    fresh = ResponseCache("s3://hydralm-cache/runs/1")
    assert fresh.get(payload) == ["a", "b"]
    assert fresh.get({**payload, "n": 3}) is None
    assert ResponseCache("s3://hydralm-cache/runs/2").get(payload) is None  # prefixes apart
    assert (fresh.hits, fresh.misses) == (1, 1)
