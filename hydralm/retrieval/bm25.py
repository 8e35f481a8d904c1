"""BM25 over one user's own history, with the `bm25s` package.

Tokenization: the text is lowercased (`str.lower`), split into runs of word characters with the
regex `\\w+` (Unicode letters, digits and "_"; punctuation and whitespace separate tokens), and the
33 English stopwords of Lucene's list (`bm25s.stopwords.STOPWORDS_EN`: "a", "an", "and", "the",
...) are dropped. No stemming. LaMP itself splits on whitespace without lowercasing; lowercasing
and stripping punctuation make "Movie," and "movie" one term, which matters on 10-200 short items.

Scoring: bm25s's default, Lucene's BM25 (k1=1.5, b=0.75, idf = ln(1 + (N - df + 0.5) / (df + 0.5)),
never negative). Ranking is by score, ties broken by the lower index, so results are deterministic.
An index is built per request (a user's history is small); see docs/tasks.md for timings.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import bm25s
import numpy as np
from bm25s.stopwords import STOPWORDS_EN

__all__ = ["BM25Index", "STOPWORDS", "bm25_top_k", "most_similar", "tokenize"]

STOPWORDS: frozenset[str] = frozenset(STOPWORDS_EN)
_TOKEN = re.compile(r"\w+")


def tokenize(text: str) -> list[str]:
    """Lowercased `\\w+` tokens of `text`, stopwords removed (the module docstring says why)."""
    return [token for token in _TOKEN.findall(text.lower()) if token not in STOPWORDS]


def _check_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")


def _check_index(i: int, size: int) -> None:
    if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 0 <= i < size:
        raise ValueError(f"i must index the documents (0..{size - 1}), got {i!r}")


class BM25Index:
    """A BM25 index over `docs`; query it with `top_k`, `scores` or `most_similar`."""

    def __init__(self, docs: Sequence[str]) -> None:
        if not docs:
            raise ValueError("BM25Index needs at least one document, got an empty docs list")
        self._corpus = [tokenize(doc) for doc in docs]
        # bm25s cannot index a corpus without a single term; every query then scores 0 anyway.
        self._model: bm25s.BM25 | None = None
        if any(self._corpus):
            self._model = bm25s.BM25()
            self._model.index(self._corpus, show_progress=False)

    def __len__(self) -> int:
        return len(self._corpus)

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every document for `query`: float32[len(docs)]; all zero when the query
        has no term of the index."""
        return self._scores(tokenize(query))

    def top_k(self, query: str, k: int = 10, *,
              exclude: Iterable[int] = ()) -> list[tuple[int, float]]:
        """The `k` best (index, score) pairs, best first, ties by index; every document (minus
        `exclude`) when k exceeds their number. Zero-score documents are included."""
        return self._rank(self._scores(tokenize(query)), k, set(exclude))

    def most_similar(self, i: int, k: int = 10) -> list[int]:
        """The `k` documents most similar to document `i` (it is the query), never `i` itself."""
        _check_index(i, len(self))
        return [j for j, _ in self._rank(self._scores(self._corpus[i]), k, {i})]

    def _scores(self, tokens: list[str]) -> np.ndarray:
        ids = self._model.get_tokens_ids(tokens) if self._model is not None else []
        if not ids:
            return np.zeros(len(self), dtype=np.float32)
        return self._model.get_scores_from_ids(ids)

    @staticmethod
    def _rank(scores: np.ndarray, k: int, exclude: set[int]) -> list[tuple[int, float]]:
        _check_k(k)
        # Stable sort on -score: equal scores keep index order.
        order = np.argsort(-scores, kind="stable").tolist()
        ranked = [i for i in order if i not in exclude] if exclude else order
        return [(i, float(scores[i])) for i in ranked[:k]]


def bm25_top_k(query: str, docs: Sequence[str], k: int = 10) -> list[int]:
    """Indices of the `k` documents of `docs` that best match `query`, best first."""
    return [i for i, _ in BM25Index(docs).top_k(query, k)]


def most_similar(docs: Sequence[str], i: int, k: int = 10, *,
                 query: str | None = None) -> list[int]:
    """The `k` documents most similar to document `i` (by BM25 with `docs[i]` as the query, or
    `query` when given), never `i` itself; best first, ties by index. For many `i` over the same
    docs, build one `BM25Index` and call its `most_similar`."""
    index = BM25Index(docs)
    if query is None:
        return index.most_similar(i, k)
    _check_index(i, len(index))
    return [j for j, _ in index.top_k(query, k, exclude=(i,))]
