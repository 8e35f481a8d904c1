"""BM25 over a user's history: ranking sanity, self-exclusion, k bounds, deterministic ties."""

from __future__ import annotations

import numpy as np
import pytest

from hydralm.retrieval import BM25Index, bm25_top_k, most_similar, tokenize

DOCS = [
    "The Lakers won the basketball game last night.",        # 0
    "A new pasta recipe with garlic and olive oil.",         # 1
    "Stock markets fell as investors worried about rates.",  # 2
    "Garlic bread: a simple recipe for dinner.",             # 3
    "The election results surprised political analysts.",   # 4
]


@pytest.mark.parametrize("text, tokens", [
    ("The Cat, the HAT!", ["cat", "hat"]),        # lowercased, punctuation splits, stopwords out
    ("state-of-the-art 3D models", ["state", "art", "3d", "models"]),
    ("Café naïve", ["café", "naïve"]),            # Unicode word characters
    ("running runs", ["running", "runs"]),        # no stemming
    ("", []),
])
def test_tokenize(text, tokens):
    assert tokenize(text) == tokens


@pytest.mark.parametrize("query, best", [
    ("basketball game", 0),
    ("olive oil pasta", 1),
    ("investors and markets", 2),
    ("political election", 4),
    ("BASKETBALL!", 0),
])
def test_the_relevant_document_comes_first(query, best):
    assert bm25_top_k(query, DOCS, k=3)[0] == best


def test_top_k_is_best_first_and_scores_match():
    index = BM25Index(DOCS)
    top = index.top_k("garlic recipe", k=5)
    assert {i for i, _ in top[:2]} == {1, 3}
    assert [s for _, s in top] == sorted((s for _, s in top), reverse=True)
    scores = index.scores("garlic recipe")
    assert scores.shape == (5,) and all(scores[i] == pytest.approx(s) for i, s in top)
    assert top[2][1] == 0.0           # documents without a query term are ranked too, at 0


def test_k_larger_than_the_corpus_returns_every_document():
    assert sorted(bm25_top_k("garlic", DOCS, k=50)) == list(range(5))
    assert len(BM25Index(DOCS).top_k("garlic", k=2)) == 2


def test_ties_are_broken_by_index():
    docs = ["apple", "banana", "apple", "cherry", "apple"]
    assert bm25_top_k("apple", docs, k=5) == [0, 2, 4, 1, 3]
    # A query with no known term scores all 0: plain index order.
    assert bm25_top_k("zebra", docs, k=3) == [0, 1, 2]
    assert bm25_top_k("the of and", docs, k=2) == [0, 1]       # stopwords only


def test_most_similar_excludes_the_item_itself():
    assert most_similar(DOCS, 1, k=1) == [3]                   # the other garlic recipe
    for i in range(len(DOCS)):
        similar = most_similar(DOCS, i, k=10)
        assert i not in similar and sorted(similar) == [j for j in range(5) if j != i]
    docs = ["same words", "same words", "other"]
    assert most_similar(docs, 0, k=1) == [1]                   # a duplicate, never itself
    assert most_similar(["only"], 0, k=3) == []


def test_most_similar_with_a_separate_query():
    # Item 3 by a query about pasta: 1 would be first, 3 is still excluded.
    assert most_similar(DOCS, 3, k=2, query="pasta garlic recipe")[0] == 1
    assert 3 not in most_similar(DOCS, 3, k=5, query="garlic bread recipe dinner")


def test_index_most_similar_matches_the_function():
    index = BM25Index(DOCS)
    assert [index.most_similar(i, k=3) for i in range(5)] == [
        most_similar(DOCS, i, k=3) for i in range(5)]
    assert index.most_similar(np.int64(1), k=1) == [3]


def test_documents_without_terms_are_indexed():
    assert BM25Index(["", "the a of"]).top_k("garlic", k=5) == [(0, 0.0), (1, 0.0)]
    assert bm25_top_k("garlic", ["", "garlic bread"], k=2) == [1, 0]


def test_empty_corpus_is_an_error():
    with pytest.raises(ValueError, match="empty docs"):
        BM25Index([])
    with pytest.raises(ValueError, match="empty docs"):
        most_similar([], 0)


@pytest.mark.parametrize("k", [0, -1, 2.5, True, "3", None])
def test_bad_k_is_an_error(k):
    with pytest.raises(ValueError, match=r"k must be a positive integer, got"):
        BM25Index(DOCS).top_k("garlic", k=k)


@pytest.mark.parametrize("i", [-1, 5, 1.0, None])
def test_bad_item_index_is_an_error(i):
    with pytest.raises(ValueError, match=r"i must index the documents \(0\.\.4\), got"):
        most_similar(DOCS, i)
