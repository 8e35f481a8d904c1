"""The pipeline's control flow with scripted stand-ins for the two parts a unit test cannot run
(the vLLM server and trained heads); tests/integration runs it against the real ones."""

from __future__ import annotations

import asyncio

import pytest

from hydralm.generator import Samples
from hydralm.history import SqliteHistoryStore
from hydralm.pipeline import METHODS, PairScorer, PairScores, Personalizer
from hydralm.tasks import get_task

QUERY = ("Which tag does this movie relate to among the following tags? Just answer with the tag "
         "name without further explanation. tags: [sci-fi, comedy] description: a robot in space")
HISTORY = [
    {"id": "i0", "description": "a robot explores space", "tag": "sci-fi"},
    {"id": "i1", "description": "a funny wedding", "tag": "comedy"},
    {"id": "i2", "description": "space pirates and a robot", "tag": "action"},
    {"id": "i3", "description": "a quiet drama", "tag": "classic"},
    {"id": "i4", "description": "robot comedy in space", "tag": "comedy"},
]


class ScriptedGenerator:
    def __init__(self) -> None:
        self.calls: list[dict] = []

    async def chat(self, messages, *, n=1, temperature=0.0, max_tokens=None, choices=None):
        self.calls.append({"prompt": messages[-1]["content"], "n": n, "temperature": temperature,
                           "choices": choices})
        return ["comedy", "sci-fi", "action", "comedy", "classic", "sci-fi", "romance", "fantasy"][:n]

    async def chat_samples(self, messages, *, options=None, seed=None, **kwargs):
        texts = await self.chat(messages, **kwargs)
        return Samples(texts, ["stop"] * len(texts))


class PrefersTag(PairScorer):
    """Scores a pair 1.0 when its second text mentions `word`, else 0.1."""

    def __init__(self, word: str) -> None:
        self.word = word
        self.calls: list[tuple[str, int]] = []
        self.asked: list[tuple] = []

    async def score(self, kind, user_id, firsts, seconds, *, profile=None,
                    prefer="user"):
        assert len(firsts) == len(seconds)
        self.calls.append((kind, len(firsts)))
        self.asked.append((kind, profile, prefer))
        return PairScores([1.0 if self.word in s else 0.1 for s in seconds], head="user")


@pytest.fixture
def history(tmp_path):
    store = SqliteHistoryStore(tmp_path / "h.db")
    store.append("u1", HISTORY)
    return store


def run(p: Personalizer, method: str, user: str = "u1"):
    return asyncio.run(p.run(user, QUERY, method))


def test_hydra_reranks_bm25_items_then_lets_the_adapter_pick(history):
    gen, scorer = ScriptedGenerator(), PrefersTag("sci-fi")
    p = Personalizer(get_task("synth-tag"), scorer, gen, history, k_retrieve=4, k_prompt=2)
    result = run(p, "hydra")
    assert len(result.retrieved_ids) == 4 and len(result.prompt_item_ids) == 2
    assert gen.calls[0]["n"] == 8 and gen.calls[0]["temperature"] == 1.0
    assert gen.calls[0]["choices"] == list(get_task("synth-tag").labels)
    assert result.answer == "sci-fi"  # the adapter's favourite among the 8 candidates
    assert [k for k, _ in scorer.calls] == ["reranker", "adapter"]
    assert result.heads == {"reranker": "user", "adapter": "user"}
    assert {"retrieve_ms", "rerank_ms", "generate_ms", "adapter_ms", "total_ms"} <= set(result.timings_ms)


@pytest.mark.parametrize("method, n, temperature, uses_items, scorer_calls", [
    ("zero_shot", 1, 0.0, False, []),
    ("icl_random", 1, 0.0, True, []),
    ("rag_bm25", 1, 0.0, True, []),
    ("hydra_reranker", 1, 0.0, True, ["reranker"]),
    ("hydra_adapter", 8, 1.0, False, ["adapter"]),
])
def test_each_baseline_is_the_pipeline_with_other_settings(history, method, n, temperature,
                                                           uses_items, scorer_calls):
    gen, scorer = ScriptedGenerator(), PrefersTag("sci-fi")
    result = run(Personalizer(get_task("synth-tag"), scorer, gen, history), method)
    assert gen.calls[0]["n"] == n and gen.calls[0]["temperature"] == temperature
    assert bool(result.prompt_item_ids) is uses_items
    assert (result.prompt != QUERY) is uses_items
    assert [k for k, _ in scorer.calls] == scorer_calls
    assert set(METHODS) >= {method}


def test_unknown_user_gets_a_zero_shot_prompt(history):
    gen = ScriptedGenerator()
    result = run(Personalizer(get_task("synth-tag"), PrefersTag("x"), gen, history), "rag_bm25",
                 user="nobody")
    assert result.prompt == QUERY and result.retrieved_ids == []


def test_unknown_method_and_missing_scorer_are_clear_errors(history):
    p = Personalizer(get_task("synth-tag"), None, ScriptedGenerator(), history)
    with pytest.raises(ValueError, match="unknown method 'best'"):
        run(p, "best")
    with pytest.raises(ValueError, match="needs a scorer"):
        run(p, "hydra")
    with pytest.raises(ValueError, match="k_prompt"):
        Personalizer(get_task("synth-tag"), None, ScriptedGenerator(), history, k_retrieve=2,
                     k_prompt=4)


def test_every_scorer_call_carries_the_history_profile_and_the_head_asked_for(history):
    from hydralm.model.zero_fit import history_profile

    task = get_task("synth-tag")
    scorer = PrefersTag("sci-fi")
    p = Personalizer(task, scorer, ScriptedGenerator(), history, k_retrieve=4, k_prompt=2)
    run(p, "hydra")
    run(p, "hydra_zero_fit")
    profile = history_profile(task.item_text(item) for item in HISTORY)
    assert profile and scorer.asked == [("reranker", profile, "user"), ("adapter", profile, "user"),
                                        ("reranker", profile, "zero_fit"),
                                        ("adapter", profile, "zero_fit")]
    run(p, "hydra", user="nobody")           # no history: nothing to route by
    assert scorer.asked[-1] == ("adapter", None, "user")


class NearlyEqual(PairScorer):
    """A collapsed adapter: every candidate scores within 0.003, 'romance' the highest."""

    async def score(self, kind, user_id, firsts, seconds, *, profile=None,
                    prefer="user"):
        return PairScores([0.033 if "romance" in s else 0.030 for s in seconds], head="user")


@pytest.mark.parametrize("min_spread, answer, how", [
    (0.0, "romance", "adapter"),     # guard off: the arbitrary argmax
    (0.01, "comedy", "fallback"),    # guard on: the majority label (comedy and sci-fi tie at 2;
                                     # equal scores, so the earlier candidate)
])
def test_guard_replaces_a_collapsed_adapter_pick(history, min_spread, answer, how):
    from hydralm.pipeline.selection import SelectionGuard

    p = Personalizer(get_task("synth-tag"), NearlyEqual(), ScriptedGenerator(), history,
                     guard=SelectionGuard(min_spread=min_spread))
    result = run(p, "hydra_adapter")
    assert (result.answer, result.selection) == (answer, how)


def test_history_rule_falls_back_to_the_users_own_answers(tmp_path):
    from hydralm.pipeline.selection import SelectionGuard

    store = SqliteHistoryStore(tmp_path / "h.db")
    store.append("u1", [{"id": f"i{j}", "description": f"a robot in space, part {j}",
                         "tag": "action" if j != 2 else "sci-fi"} for j in range(5)])
    task = get_task("synth-tag")
    p = Personalizer(task, NearlyEqual(), ScriptedGenerator(), store, k_retrieve=5, k_prompt=3,
                     guard=SelectionGuard(min_spread=0.01, rule="history"))
    result = run(p, "hydra")
    # the prompt's items' own tags come back; the candidate "action" agrees with most of them
    # (consensus would pick "comedy")
    assert sorted(result.history_answers) in (["action"] * 3, ["action", "action", "sci-fi"])
    assert (result.answer, result.selection) == ("action", "fallback")
    # hydra_adapter's prompt holds no history item: BM25's top k_prompt of the history stand in
    alone = run(p, "hydra_adapter")
    assert len(alone.history_answers) == 3 and alone.prompt_item_ids == []
    assert (alone.answer, alone.selection) == ("action", "fallback")
    # consensus would pick "comedy" (the majority of the samples)
    consensus = Personalizer(task, NearlyEqual(), ScriptedGenerator(), store, k_retrieve=5,
                             k_prompt=3, guard=SelectionGuard(min_spread=0.01))
    assert run(consensus, "hydra").answer == "comedy"


class NearlyEqualAsAsked(NearlyEqual):
    """NearlyEqual, served by the head asked for (a zero-fit mixture for hydra_zero_fit)."""

    async def score(self, kind, user_id, firsts, seconds, *, profile=None, prefer="user"):
        scores = await super().score(kind, user_id, firsts, seconds, profile=profile)
        return PairScores(scores.scores, head=prefer)


def test_zero_fit_picks_have_their_own_guard(history):
    from hydralm.pipeline.selection import SelectionGuard

    guard = SelectionGuard(0.0, zero_fit=SelectionGuard(0.01, "consensus"))
    p = Personalizer(get_task("synth-tag"), NearlyEqualAsAsked(), ScriptedGenerator(), history,
                     guard=guard)
    fitted, zero_fit = run(p, "hydra"), run(p, "hydra_zero_fit")
    assert (fitted.heads["adapter"], fitted.selection) == ("user", "adapter")
    assert (zero_fit.heads["adapter"], zero_fit.selection) == ("zero_fit", "fallback")
    with pytest.raises(ValueError, match="no zero-fit guard of its own"):
        SelectionGuard(zero_fit=guard)
