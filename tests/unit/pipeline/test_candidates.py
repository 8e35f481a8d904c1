"""The adapter's candidate pool: one policy drawn the same way for training labels and serving."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import ValidationError

from hydralm.generator import Samples
from hydralm.history import SqliteHistoryStore
from hydralm.labels.config import LabelsConfig
from hydralm.pipeline import (
    CandidateSampling,
    PairScorer,
    PairScores,
    Personalizer,
    adapter_context,
)
from hydralm.tasks import get_task
from serving.config import ServeArgs


class EchoGenerator:
    """Answers "greedy" at temperature 0 and "sample-i" otherwise, prefixed "bare-" for the bare
    query's prompt ("q"); records every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, float]] = []
        self.prompts: list[str] = []

    async def chat(self, messages, *, n=1, temperature=0.0, max_tokens=None, choices=None):
        self.calls.append((n, temperature))
        self.prompts.append(messages[-1]["content"])
        prefix = "bare-" if messages[-1]["content"] in ("q", BARE) else ""
        if temperature == 0.0:
            return [prefix + "greedy"] * n
        return [f"{prefix}sample-{i}" for i in range(n)]

    async def chat_samples(self, messages, *, options=None, seed=None, **kwargs):
        texts = await self.chat(messages, **kwargs)
        return Samples(texts, ["stop"] * len(texts))


BARE = "Generate a title for: graph networks"


def sample(policy: CandidateSampling, n: int | None = None):
    gen = EchoGenerator()
    out = asyncio.run(policy.sample(gen, [{"role": "user", "content": "prompt with items"}],
                                    bare=[{"role": "user", "content": "q"}], n=n))
    return out, sorted(gen.calls)


def test_the_paper_default_samples_all_n_at_the_temperature():
    out, calls = sample(CandidateSampling(n=8, temperature=0.7))
    assert out == [f"sample-{i}" for i in range(8)]
    assert calls == [(8, 0.7)]


def test_greedy_first_puts_the_greedy_answer_first_and_samples_the_rest():
    out, calls = sample(CandidateSampling(n=8, greedy_first=True))
    assert out == ["greedy"] + [f"sample-{i}" for i in range(7)]
    assert calls == [(1, 0.0), (7, 1.0)]


def test_a_pool_of_one_with_greedy_first_is_the_greedy_answer_alone():
    out, calls = sample(CandidateSampling(n=8, greedy_first=True), n=1)
    assert out == ["greedy"] and calls == [(1, 0.0)]


def test_a_two_prompt_pool_puts_the_bare_greedy_answer_first():
    policy = CandidateSampling(n=8, greedy_first=True, bare_greedy=True, bare_samples=3)
    out, calls = sample(policy)
    assert out == ["bare-greedy", "greedy", "sample-0", "sample-1", "sample-2",
                   "bare-sample-0", "bare-sample-1", "bare-sample-2"]
    assert calls == [(1, 0.0), (1, 0.0), (3, 1.0), (3, 1.0)]
    assert policy.uses_bare and not CandidateSampling(greedy_first=True).uses_bare


def test_a_bare_only_pool_draws_nothing_from_the_personalized_prompt():
    """synth-title's policy: the bare query's greedy answer and 7 of its samples."""
    policy = CandidateSampling(n=8, temperature=0.7, bare_greedy=True, bare_samples=7)
    out, calls = sample(policy)
    assert out == ["bare-greedy"] + [f"bare-sample-{i}" for i in range(7)]
    assert calls == [(1, 0.0), (7, 0.7)]
    assert [d.source for d in policy.calls()] == ["bare", "bare"]
    assert sample(policy, n=3)[0] == ["bare-greedy", "bare-sample-0", "bare-sample-1"]


def test_a_smaller_pool_keeps_the_greedy_answers_and_shares_the_samples():
    policy = CandidateSampling(n=8, greedy_first=True, bare_greedy=True, bare_samples=3)
    assert sample(policy, n=4)[0] == ["bare-greedy", "greedy", "sample-0", "bare-sample-0"]
    assert sample(policy, n=1)[0] == ["bare-greedy"]
    assert sample(CandidateSampling(n=4, bare_samples=4), n=2)[0] == ["bare-sample-0",
                                                                      "bare-sample-1"]


def test_a_bare_policy_without_the_bare_prompt_is_refused():
    gen = EchoGenerator()
    with pytest.raises(ValueError, match="bare messages"):
        asyncio.run(CandidateSampling(n=2, bare_greedy=True).sample(
            gen, [{"role": "user", "content": "p"}]))


@pytest.mark.parametrize("kwargs, field", [({"n": 0}, "n"), ({"temperature": 0.0}, "temperature"),
                                           ({"temperature": 2.5}, "temperature"),
                                           ({"n": 2, "bare_samples": 3}, "bare_samples"),
                                           ({"n": 2, "bare_greedy": True, "greedy_first": True,
                                             "bare_samples": 1}, "bare_samples"),
                                           ({"bare_samples": -1}, "bare_samples")])
def test_bad_policies_are_refused_naming_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        CandidateSampling(**kwargs)


def test_labels_and_serving_configs_hand_their_policy_to_the_pipeline():
    cfg = LabelsConfig(n_candidates=6, adapter_temperature=0.5, adapter_greedy_candidate=True)
    assert cfg.sampling() == CandidateSampling(n=6, temperature=0.5, greedy_first=True)
    assert LabelsConfig().sampling() == CandidateSampling(n=8, temperature=1.0, greedy_first=False)
    two = LabelsConfig(adapter_bare_greedy_candidate=True, adapter_bare_samples=3)
    assert two.sampling() == CandidateSampling(bare_greedy=True, bare_samples=3)
    serve = ServeArgs(greedy_candidate=True, bare_greedy_candidate=True, bare_candidates=3)
    assert serve.sampling() == CandidateSampling(greedy_first=True, bare_greedy=True,
                                                 bare_samples=3)


@pytest.mark.parametrize("make", [
    lambda: LabelsConfig(n_candidates=2, adapter_bare_greedy_candidate=True,
                         adapter_bare_samples=2),
    lambda: ServeArgs(n_candidates=2, bare_greedy_candidate=True, bare_candidates=2)])
def test_a_pool_that_does_not_hold_its_parts_is_refused_naming_the_setting(make):
    with pytest.raises(ValidationError, match="bare_(samples|candidates) \\(2\\) plus the greedy"):
        make()


class PrefersGreedy(PairScorer):
    async def score(self, kind, user_id, firsts, seconds, *, profile=None,
                    prefer="user"):
        return PairScores([1.0 if s == "greedy" else 0.2 for s in seconds], head="user")


def test_the_personalizer_draws_with_the_policy_and_the_adapter_may_keep_the_greedy_answer(
        tmp_path):
    store = SqliteHistoryStore(tmp_path / "h.db")
    store.append("u1", [{"id": "i0", "abstract": "graph networks", "title": "On Graphs"}])
    gen = EchoGenerator()
    personalizer = Personalizer(get_task("LaMP-5"), PrefersGreedy(), gen, store,
                                n_candidates=4,
                                sampling=CandidateSampling(n=4, temperature=0.3,
                                                           greedy_first=True))
    result = asyncio.run(personalizer.run("u1", "Generate a title for: graph networks", "hydra"))
    assert result.candidates == ["greedy", "sample-0", "sample-1", "sample-2"]
    assert result.answer == "greedy" and result.adapter_scores[0] == 1.0
    assert sorted(gen.calls) == [(1, 0.0), (3, 0.3)]


def test_the_personalizer_draws_from_the_bare_query_too_and_the_adapter_reads_query_and_prompt(
        tmp_path):
    store = SqliteHistoryStore(tmp_path / "h.db")
    store.append("u1", [{"id": "i0", "abstract": "graph networks", "title": "On Graphs"}])
    gen = EchoGenerator()
    seen: list[tuple[str, str]] = []

    class PrefersBare(PairScorer):
        async def score(self, kind, user_id, firsts, seconds, *, profile=None, prefer="user"):
            if kind == "adapter":
                seen.extend(zip(firsts, seconds, strict=True))
            return PairScores([0.9 if s == "bare-sample-0" else 0.1 for s in seconds], "user")

    policy = CandidateSampling(n=4, greedy_first=True, bare_greedy=True, bare_samples=1)
    personalizer = Personalizer(get_task("LaMP-5"), PrefersBare(), gen, store, sampling=policy)
    result = asyncio.run(personalizer.run("u1", BARE, "hydra"))
    assert result.candidates == ["bare-greedy", "greedy", "sample-0", "bare-sample-0"]
    assert result.answer == "bare-sample-0"
    assert gen.prompts.count(BARE) == 2 and result.prompt != BARE   # bare calls, RAG prompt
    context = adapter_context(get_task("LaMP-5"), BARE, result.prompt)
    assert {first for first, _ in seen} == {context} and len(seen) == 4
