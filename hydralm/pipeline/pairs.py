"""The texts each HYDRA model reads. Training labels and inference build pairs here and only here,
so the models see at serving time exactly what they were trained on."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["ADAPTER_PAIRS", "adapter_context", "adapter_pairs", "reranker_pairs"]

# The adapter's pair format, named wherever an adapter's pairs are stored or trained on: the
# adapter's label shards are keyed by it (a change of format labels again instead of reusing
# shards of the old texts), the label manifest and the published bundle record it (the bundle's
# adapter `info.pairs`), and loading an adapter whose bundle records another format, or none (an
# adapter trained before c1e0897, on the prompt alone), logs a warning.
ADAPTER_PAIRS = "query+prompt/1"


def reranker_pairs(task, query_input: str, items: list[dict]) -> tuple[list[str], list[str]]:
    """(query, history item) pairs: the query's retrievable text against each item's text."""
    query = task.query_text(query_input)
    return [query] * len(items), [task.item_text(item) for item in items]


def adapter_context(task, query_input: str, prompt: str) -> str:
    """What the adapter reads before a candidate: the query's own text (its instruction
    removed), then the RAG prompt the candidates were sampled from. The encoder cuts a pair from
    its end to `max_length` tokens, and the prompt ends with the query after the history items,
    so the query comes first: a cut drops history items, never the question being answered."""
    return f"{task.query_text(query_input)}\n\n{prompt}"


def adapter_pairs(task, query_input: str, prompt: str,
                  candidates: Sequence[str]) -> tuple[list[str], list[str]]:
    """(context, candidate) pairs, the context from `adapter_context`, one pair per candidate."""
    context = adapter_context(task, query_input, prompt)
    return [context] * len(candidates), list(candidates)
