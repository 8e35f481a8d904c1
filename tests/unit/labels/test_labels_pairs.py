"""Which pairs and calls labels are made of: pair texts from hydralm.pipeline, BM25 top-k for real
queries, most similar other items for pseudo-queries, adapter prompts without the item itself."""

from __future__ import annotations

import pytest

from hydralm.data import LampRecord, synthesize
from hydralm.errors import UnsupportedTaskError
from hydralm.labels import (
    adapter_call,
    fit_queries,
    pseudo_queries,
    record_queries,
    reranker_calls,
    train_queries,
)
from hydralm.pipeline import adapter_pairs, reranker_pairs
from hydralm.retrieval import bm25_top_k, most_similar
from hydralm.tasks import get_task

TASK = get_task("synth-tag")


@pytest.fixture(scope="module")
def user() -> list[LampRecord]:
    return synthesize("synth-tag", 1, seed=3, queries_per_user=2, items_per_user=15)


def test_real_query_pairs_are_its_bm25_top_k_built_by_reranker_pairs(user):
    profile = user[0].profile
    (query,) = record_queries(user[:1])
    calls = reranker_calls(TASK, query, profile, k=10)
    docs = [TASK.item_text(item) for item in profile]
    top = bm25_top_k(TASK.query_text(query.input), docs, k=10)
    assert [c.item_id for c in calls] == [profile[i]["id"] for i in top]
    firsts, seconds = reranker_pairs(TASK, query.input, [profile[i] for i in top])
    assert [c.first for c in calls] == firsts and [c.second for c in calls] == seconds
    # The one-shot example is the paired item with its own answer, then the query.
    first_item = profile[top[0]]
    assert calls[0].messages == tuple(TASK.one_shot_messages(query.input, first_item))


def test_pseudo_query_pairs_are_most_similar_other_items(user):
    profile = user[0].profile
    queries = pseudo_queries(TASK, "u", profile, 3, seed=0)
    assert len(queries) == 3
    for query in queries:
        assert query.source == "pseudo" and query.gold == TASK.item_target(profile[query.item_index])
        assert query.input == TASK.item_query(profile[query.item_index], truncate=True)
        calls = reranker_calls(TASK, query, profile, k=5)
        docs = [TASK.item_text(item) for item in profile]
        expected = [profile[i]["id"] for i in most_similar(docs, query.item_index, 5)]
        assert [c.item_id for c in calls] == expected
        assert profile[query.item_index]["id"] not in expected


@pytest.mark.parametrize("n, seed, expected_count", [(3, 0, 3), (100, 0, 15), (0, 0, 0)])
def test_pseudo_query_draw_is_reproducible_and_bounded(user, n, seed, expected_count):
    profile = user[0].profile
    first = pseudo_queries(TASK, "u", profile, n, seed=seed)
    assert first == pseudo_queries(TASK, "u", profile, n, seed=seed)
    assert len(first) == expected_count
    assert len({q.item_index for q in first}) == expected_count


def test_pseudo_query_draw_depends_on_the_user(user):
    profile = user[0].profile
    picks = {tuple(q.item_index for q in pseudo_queries(TASK, u, profile, 4, seed=0))
             for u in ("a", "b", "c", "d")}
    assert len(picks) > 1


def test_pseudo_queries_need_item_labels():
    item = {"id": "p1", "title": "t", "abstract": "a"}
    with pytest.raises(UnsupportedTaskError):
        pseudo_queries(get_task("LaMP-1"), "u", [item, item], 1, seed=0)


def test_adapter_prompt_is_the_rag_prompt_of_bm25_top_items(user):
    profile = user[0].profile
    (query,) = record_queries(user[:1])
    call = adapter_call(TASK, query, profile, k_retrieve=10, k_prompt=4)
    docs = [TASK.item_text(item) for item in profile]
    top4 = [profile[i] for i in bm25_top_k(TASK.query_text(query.input), docs, k=10)[:4]]
    assert call.prompt == TASK.rag_prompt(query.input, top4)
    assert call.item_ids == tuple(i["id"] for i in top4) and call.retrieval == "bm25"
    assert call.pairs(TASK, ["a", "b"]) == adapter_pairs(TASK, query.input, call.prompt, ["a", "b"])


def test_adapter_prompt_of_a_pseudo_query_never_holds_its_own_item(user):
    profile = user[0].profile
    for query in pseudo_queries(TASK, "u", profile, 5, seed=1):
        call = adapter_call(TASK, query, profile, k_retrieve=len(profile), k_prompt=len(profile))
        assert profile[query.item_index]["id"] not in call.item_ids
        assert len(call.item_ids) == len(profile) - 1


def test_rerank_reorders_the_retrieved_items(user):
    profile = user[0].profile
    (query,) = record_queries(user[:1])
    plain = adapter_call(TASK, query, profile, k_retrieve=6, k_prompt=6)
    # A reranker preferring the BM25 order reversed.
    reranked = adapter_call(TASK, query, profile, k_retrieve=6, k_prompt=2,
                            rerank=lambda user, q, items: [float(i) for i in range(len(items))])
    assert reranked.item_ids == plain.item_ids[::-1][:2] and reranked.retrieval == "rerank"


def test_train_queries_are_real_then_pseudo_and_fit_queries_pseudo_only(user):
    profile = user[0].profile
    train = train_queries(TASK, "u0000", profile, user, pseudo_per_user=2, seed=0)
    assert [q.source for q in train] == ["query", "query", "pseudo", "pseudo"]
    fit = fit_queries(TASK, "u0000", profile, pseudo_per_user=2, seed=0)
    assert fit == train[2:]


def test_a_training_query_without_gold_is_an_error(user):
    rec = LampRecord(id="q9", user_id="u", input="x", profile=user[0].profile)
    with pytest.raises(ValueError, match="'q9'.*no gold"):
        record_queries([rec])
