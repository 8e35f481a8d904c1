"""`Task`: everything task-specific that the pipeline needs, as data plus a few methods.

One frozen dataclass describes every task; the registry (`registry.py`) fills it in per task from
LaMP's code. A profile item is a plain dict with the task's fields (`hydralm.data.PROFILE_FIELDS`).
"""

from __future__ import annotations

import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal

from hydralm.errors import DataValidationError, UnsupportedTaskError
from hydralm.tasks import metrics
from hydralm.tasks.parsing import parse_generation, parse_label, parse_rating
from hydralm.tasks.prompts import ITEM_SEPARATOR, truncate_words

__all__ = ["MAX_ITEM_WORDS", "Kind", "Task"]

Kind = Literal["classification", "rating", "generation"]

# Words kept of an item's long field (text, description, abstract; LaMP-1: title) when it is put
# into a prompt: 4 items of 80 words are about 450 SmolLM2 tokens, which leaves room for the query
# within a 1,024-token context. LaMP instead shares a token budget between items.
MAX_ITEM_WORDS = 80


@dataclass(frozen=True)
class Task:
    """A LaMP-style task. Templates are `str.format` strings over the profile item's fields."""

    name: str
    kind: Kind
    labels: tuple[str, ...] | None
    primary_metric: str
    higher_is_better: bool
    # item_text: these fields joined by a space (LaMP's BM25 corpus for the task).
    text_fields: tuple[str, ...]
    # The field cut to `max_item_words` when an item goes into a prompt.
    long_field: str
    # LaMP's rendering of one history item in a RAG prompt.
    item_template: str
    # The item's own label/output; None where items carry none (LaMP-1).
    target_field: str | None
    # The LaMP query input an item stands for as a pseudo-query; None where there is none.
    query_template: str | None
    # query input -> the text retrieval reads (LaMP's *_query_corpus_maker).
    extract_query: Callable[[str], str] = field(repr=False)
    # (query input, rendered items joined by ", and ") -> RAG prompt.
    assemble: Callable[[str, str], str] = field(repr=False)
    max_item_words: int = MAX_ITEM_WORDS

    @property
    def supports_pseudo_queries(self) -> bool:
        """Whether history items can stand for queries (HYDRA's label generation needs it)."""
        return self.target_field is not None and self.query_template is not None

    def choices(self) -> list[str] | None:
        """The answer set for constrained decoding; None for free generation."""
        return list(self.labels) if self.labels is not None else None

    # --- items ---------------------------------------------------------------------------------

    def _field(self, item: Mapping, name: str) -> str:
        try:
            value = item[name]
        except KeyError:
            raise DataValidationError(
                f"{self.name} profile item has no {name!r}; got keys {sorted(item)}",
                field=name) from None
        if value is None:
            raise DataValidationError(f"{self.name} profile item has {name!r} = None", field=name)
        return str(value)

    def _fields(self, item: Mapping, names: Sequence[str], *, truncate: bool) -> dict[str, str]:
        values = {name: self._field(item, name) for name in names}
        if truncate and self.long_field in values:
            values[self.long_field] = truncate_words(values[self.long_field], self.max_item_words)
        return values

    def item_text(self, item: Mapping) -> str:
        """The text BM25 and the reranker read for a history item."""
        return " ".join(self._field(item, name) for name in self.text_fields)

    def item_target(self, item: Mapping) -> str:
        """The item's own label or output (its category, tag, score, title or text)."""
        if self.target_field is None:
            raise UnsupportedTaskError(
                f"{self.name} profile items carry no label, so they have no target (a LaMP-1 item "
                "is a paper of the author; which references it cites is not in the data)")
        return self._field(item, self.target_field).strip()

    def item_query(self, item: Mapping, *, truncate: bool = False) -> str:
        """The LaMP query input the item stands for as a pseudo-query, e.g. for LaMP-2M the tagging
        question about the item's description. `truncate` cuts its long field as prompts do."""
        if not self.supports_pseudo_queries:
            raise UnsupportedTaskError(
                f"{self.name} has no pseudo-queries: its profile items carry no label to answer "
                "with; use real queries (with golds) for this task")
        names = _template_fields(self.query_template)
        return self.query_template.format(**self._fields(item, names, truncate=truncate))

    def render_item(self, item: Mapping) -> str:
        """LaMP's rendering of one history item, its long field cut to `max_item_words` words."""
        names = _template_fields(self.item_template)
        return self.item_template.format(**self._fields(item, names, truncate=True))

    # --- queries and prompts -------------------------------------------------------------------

    def query_text(self, query_input: str) -> str:
        """The part of a query input retrieval reads (LaMP's instruction boilerplate removed)."""
        return self.extract_query(query_input)

    def rag_prompt(self, query_input: str, items: Sequence[Mapping]) -> str:
        """LaMP's retrieval-augmented prompt; the query unchanged when there are no items."""
        if not items:
            return query_input
        rendered = ITEM_SEPARATOR.join(self.render_item(item) for item in items)
        return self.assemble(query_input, rendered)

    def one_shot_messages(self, query_input: str, item: Mapping) -> list[dict[str, str]]:
        """HYDRA's reranker-label prompt as chat turns: the item's own question, its answer, then
        the query (HYDRA `reranker/generator/train_data_gen.py`)."""
        return [
            {"role": "user", "content": self.item_query(item, truncate=True)},
            {"role": "assistant", "content": self.item_target(item)},
            {"role": "user", "content": query_input},
        ]

    def one_shot_prompt(self, query_input: str, item: Mapping) -> str:
        """The same one-shot example as a single text, for completion endpoints:
        `{item question}\\nAnswer: {item answer}\\n\\n{query}\\nAnswer:`."""
        example = self.item_query(item, truncate=True)
        return f"{example}\nAnswer: {self.item_target(item)}\n\n{query_input}\nAnswer:"

    # --- answers -------------------------------------------------------------------------------

    def parse(self, text: str | None) -> str | None:
        """Normalise an LLM answer: one of the labels, a rating "1".."5", or stripped text."""
        if self.kind == "classification":
            return parse_label(text, self.labels)
        if self.kind == "rating":
            return parse_rating(text)
        return parse_generation(text)

    def score(self, preds: Sequence[str | None], golds: Sequence[str]) -> dict[str, float]:
        """LaMP's metrics for parsed predictions (None: unparseable). Classification: "accuracy",
        "f1" (macro over the label set); rating: "mae", "rmse"; generation: "rouge-1", "rouge-l",
        "bleu" (0-100). Classification counts a prediction right only when it equals the gold
        label exactly (after stripping), as LaMP does: parse raw answers first."""
        if len(preds) != len(golds):
            raise ValueError(f"need one prediction per gold, got {len(preds)} predictions for "
                             f"{len(golds)} golds")
        golds = [self._gold(g, i) for i, g in enumerate(golds)]
        if self.kind == "classification":
            cleaned = [p.strip() if p is not None else None for p in preds]
            return {"accuracy": metrics.accuracy(cleaned, golds),
                    "f1": metrics.macro_f1(cleaned, golds, self.labels)}
        if self.kind == "rating":
            values = [float(g) for g in golds]
            numbers = [metrics.rating_value(p, g) for p, g in zip(preds, values, strict=True)]
            return {"mae": metrics.mae(numbers, values), "rmse": metrics.rmse(numbers, values)}
        return {**metrics.rouge(preds, golds), "bleu": metrics.bleu(preds, golds)}

    def _gold(self, gold: str, index: int) -> str:
        gold = str(gold).strip()
        if self.labels is not None and gold not in self.labels:
            raise ValueError(f"{self.name} gold {index} is not one of the task's labels "
                             f"{list(self.labels)}, got {gold!r}")
        return gold


@lru_cache(maxsize=64)
def _template_fields(template: str) -> tuple[str, ...]:
    """The item fields a template names, e.g. ("text", "category")."""
    return tuple(name for _, name, _, _ in string.Formatter().parse(template) if name)
