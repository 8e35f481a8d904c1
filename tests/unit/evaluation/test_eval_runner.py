"""The method runner's bookkeeping, with scripted stand-ins for the two parts a unit test cannot
run (the vLLM server and trained heads); tests/integration/test_eval.py runs the real ones."""

from __future__ import annotations

import asyncio

import pytest

from hydralm.evaluation import (
    HISTORY_KNN,
    LLM_METHODS,
    EvalQuery,
    MemoryHistory,
    needs_scorer,
    run_queries,
)
from hydralm.generator import Samples
from hydralm.pipeline import PairScorer, PairScores, Personalizer
from hydralm.tasks import get_task

TASK = get_task("synth-tag")
HISTORY = [
    {"id": "0", "description": "robot in space", "tag": "sci-fi"},
    {"id": "1", "description": "robot wedding", "tag": "comedy"},
    {"id": "2", "description": "garden drama", "tag": "classic"},
]
SAMPLES = ["comedy", "sci-fi", "action", "comedy", "classic", "sci-fi", "romance", "fantasy"]


class ScriptedGenerator:
    """Greedy: 'dystopia' (wrong everywhere); sampled: SAMPLES; records every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, str]] = []

    async def chat(self, messages, *, n=1, temperature=0.0, max_tokens=None, choices=None):
        self.calls.append((n, messages[-1]["content"]))
        return ["dystopia"] if n == 1 else SAMPLES[:n]

    async def chat_samples(self, messages, *, options=None, seed=None, **kwargs):
        texts = await self.chat(messages, **kwargs)
        return Samples(texts, ["stop"] * len(texts))


class PrefersSciFi(PairScorer):
    async def score(self, kind, user_id, firsts, seconds, *, profile=None,
                    prefer="user"):
        return PairScores([0.9 if "sci-fi" in s else 0.1 for s in seconds],
                          head="zero_fit" if prefer == "zero_fit" and profile else "user")


def _query(i: int, gold: str) -> EvalQuery:
    return EvalQuery("u1", f"q{i}", f"Which tag ... description: a robot story {i}", gold)


def test_every_method_answers_every_query_and_the_oracle_uses_hydras_candidates():
    gen = ScriptedGenerator()
    p = Personalizer(TASK, PrefersSciFi(), gen, MemoryHistory({"u1": HISTORY}), k_retrieve=3,
                     k_prompt=2)
    queries = [_query(0, "sci-fi"), _query(1, "romance"), _query(2, "thought-provoking")]
    outcomes = asyncio.run(run_queries(p, queries, progress=False))
    assert [o.query_id for o in outcomes] == ["q0", "q1", "q2"]
    first = outcomes[0]
    assert set(first.answers) == {*LLM_METHODS, HISTORY_KNN, "oracle_best_of_8"}
    assert first.answers["zero_shot"] == "dystopia" and first.answers["hydra"] == "sci-fi"
    assert first.candidates == SAMPLES
    assert first.heads["hydra"] == {"reranker": "user", "adapter": "user"}
    # hydra_zero_fit asks for the zero-fit heads, with the user's history profile
    assert first.heads["hydra_zero_fit"] == {"reranker": "zero_fit", "adapter": "zero_fit"}
    assert "zero_shot" not in first.heads
    # The oracle finds the gold among the 8 candidates when it is there, else the first one.
    assert [o.answers["oracle_best_of_8"] for o in outcomes] == ["sci-fi", "romance", "comedy"]
    # Two "robot" items vote sci-fi vs comedy, tie -> the best-ranked one.
    assert first.answers[HISTORY_KNN] in {"sci-fi", "comedy"}
    # Seven generator calls per query: four greedy, three with 8 samples.
    assert sorted(n for n, _ in gen.calls) == [1] * 12 + [8] * 9


def test_prompt_only_methods_run_without_a_scorer_and_without_an_oracle():
    methods = [m for m in LLM_METHODS if not needs_scorer(m)]
    assert methods == ["zero_shot", "icl_random", "rag_bm25"]
    p = Personalizer(TASK, None, ScriptedGenerator(), MemoryHistory({"u1": HISTORY}))
    (outcome,) = asyncio.run(run_queries(p, [_query(0, "sci-fi")], methods, progress=False))
    assert set(outcome.answers) == {*methods, HISTORY_KNN} and outcome.candidates == []


@pytest.mark.parametrize("kwargs, message", [
    ({"methods": ["zero_shot", "gpt4"]}, "unknown method 'gpt4'"),
    ({"concurrency": 0}, "concurrency must be at least 1"),
])
def test_run_queries_rejects_bad_arguments(kwargs, message):
    p = Personalizer(TASK, None, ScriptedGenerator(), MemoryHistory({}))
    with pytest.raises(ValueError, match=message):
        asyncio.run(run_queries(p, [_query(0, "sci-fi")], progress=False, **kwargs))


def test_memory_history_returns_copies_and_appends():
    store = MemoryHistory({"u1": HISTORY[:1]})
    store.get("u1").append({"id": "x"})
    assert store.get("u1") == HISTORY[:1] and store.get("nobody") == []
    assert store.append("u2", HISTORY) == 3
