"""LaMP's prompt pieces: the query text retrieval reads, item truncation, and RAG assembly.

Re-implemented from LaMP's `LaMP/prompts/prompts.py` and `prompts/utils.py` (and HYDRA's copy of
them, which adds the no-tokenizer path used here): items are rendered, joined with ", and ", and
put before the query (`"{items}. {query}"`), except LaMP-1 (inserted after the word "title" of the
query), LaMP-5 (`"{items}. Following the given patterns {query}"`) and LaMP-7 (`"{items} are
written by a person. Following the given patterns {query}"`). LaMP truncates each item's long field
with a tokenizer to share a token budget; here it is cut to a fixed number of words instead.
"""

from __future__ import annotations

__all__ = [
    "ITEM_SEPARATOR",
    "after_title",
    "citation_candidates",
    "quoted_strings",
    "rag_template",
    "text_after",
    "truncate_words",
]

ITEM_SEPARATOR = ", and "


def truncate_words(text: str, max_words: int) -> str:
    """The first `max_words` whitespace-separated words of `text` (whitespace runs collapsed when
    it is cut; returned unchanged when it is short enough)."""
    if max_words < 1:
        raise ValueError(f"max_words must be at least 1, got {max_words!r}")
    words = text.split()
    return text if len(words) <= max_words else " ".join(words[:max_words])


def text_after(text: str, marker: str) -> str:
    """The text after the first `marker` (LaMP's `extract_after_*`), stripped; the whole input,
    stripped, when the marker is absent (LaMP returns None there, which would crash BM25)."""
    index = text.find(marker)
    return text.strip() if index == -1 else text[index + len(marker):].strip()


def quoted_strings(text: str) -> list[str]:
    """The strings between pairs of double quotes, in order (LaMP's
    extract_strings_between_quotes; an unclosed last quote is ignored)."""
    return text.split('"')[1::2][: text.count('"') // 2]


def citation_candidates(text: str) -> str:
    """LaMP-1's retrieval query: the two candidate reference titles (the 2nd and 3rd quoted
    strings of the input; the 1st is the author's paper). The whole input when they are missing."""
    quoted = quoted_strings(text)
    return f"{quoted[1]} {quoted[2]}" if len(quoted) >= 3 else text.strip()


def after_title(query: str, items: str) -> str:
    """LaMP-1 assembly (LaMP's add_string_after_title): `", and " + items` right after the first
    "title" of the query; the query unchanged when it has no "title", as in LaMP."""
    index = query.find("title")
    if index == -1:
        return query
    cut = index + len("title")
    return f"{query[:cut]}{ITEM_SEPARATOR}{items}{query[cut:]}"


def rag_template(template: str):
    """An assembler that formats `template` with the joined items and the query."""

    def assemble(query: str, items: str) -> str:
        return template.format(items=items, query=query)

    assemble.__qualname__ = f"rag_template({template!r})"
    return assemble
