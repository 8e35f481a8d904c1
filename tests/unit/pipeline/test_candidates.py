"""The adapter's candidate pool: one policy drawn the same way for training labels and serving."""

from __future__ import annotations

import asyncio

import pytest

from hydralm.generator import Samples
from hydralm.history import SqliteHistoryStore
from hydralm.labels.config import LabelsConfig
from hydralm.pipeline import CandidateSampling, PairScorer, PairScores, Personalizer
from hydralm.tasks import get_task


class EchoGenerator:
    """Answers "greedy" at temperature 0 and "sample-i" otherwise; records every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, float]] = []

    async def chat(self, messages, *, n=1, temperature=0.0, max_tokens=None, choices=None):
        self.calls.append((n, temperature))
        if temperature == 0.0:
            return ["greedy"] * n
        return [f"sample-{i}" for i in range(n)]

    async def chat_samples(self, messages, *, options=None, seed=None, **kwargs):
        texts = await self.chat(messages, **kwargs)
        return Samples(texts, ["stop"] * len(texts))


def sample(policy: CandidateSampling, n: int | None = None):
    gen = EchoGenerator()
    out = asyncio.run(policy.sample(gen, [{"role": "user", "content": "q"}], n=n))
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


@pytest.mark.parametrize("kwargs, field", [({"n": 0}, "n"), ({"temperature": 0.0}, "temperature"),
                                           ({"temperature": 2.5}, "temperature")])
def test_bad_policies_are_refused_naming_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        CandidateSampling(**kwargs)


def test_labels_config_hands_its_policy_to_the_pipeline():
    cfg = LabelsConfig(n_candidates=6, adapter_temperature=0.5, adapter_greedy_candidate=True)
    assert cfg.sampling() == CandidateSampling(n=6, temperature=0.5, greedy_first=True)
    assert LabelsConfig().sampling() == CandidateSampling(n=8, temperature=1.0, greedy_first=False)


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
