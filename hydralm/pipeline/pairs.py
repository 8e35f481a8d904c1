"""The texts each HYDRA model reads. Training labels and inference build pairs here and only here,
so the models see at serving time exactly what they were trained on."""

from __future__ import annotations

__all__ = ["adapter_pairs", "reranker_pairs"]


def reranker_pairs(task, query_input: str, items: list[dict]) -> tuple[list[str], list[str]]:
    """(query, history item) pairs: the query's retrievable text against each item's text."""
    query = task.query_text(query_input)
    return [query] * len(items), [task.item_text(item) for item in items]


def adapter_pairs(prompt: str, candidates: list[str]) -> tuple[list[str], list[str]]:
    """(prompt, candidate) pairs: the RAG prompt the candidates were sampled from, and each one."""
    return [prompt] * len(candidates), list(candidates)
