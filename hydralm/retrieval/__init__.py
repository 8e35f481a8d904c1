"""BM25 over one user's own profile: top-k items for a query, and the k most similar other items.

Tokenization (lowercase, `\\w+`, Lucene's English stopwords, no stemming) is documented in
`hydralm.retrieval.bm25` and docs/tasks.md.
"""

from hydralm.retrieval.bm25 import STOPWORDS, BM25Index, bm25_top_k, most_similar, tokenize

__all__ = ["BM25Index", "STOPWORDS", "bm25_top_k", "most_similar", "tokenize"]
