"""Turning an LLM's answer into a task answer: a label, a rating "1".."5", or stripped text.

Parsing is tolerant where the answer is unambiguous and returns None otherwise, so a caller can
count unparseable answers (LaMP's evaluation scores them as wrong; see `metrics`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

__all__ = ["parse_generation", "parse_label", "parse_rating"]

# Characters around a whole answer that carry no meaning: quotes, brackets, punctuation, markdown.
_WRAPPING = " \t\r\n\"'`*.,;:!?()"
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def _aliases(label: str) -> list[str]:
    """Other spellings of a label a model may use: "food and drink", "sci fi", "1" for "[1]"."""
    variants = {label.replace("&", "and"), label.replace("-", " ")}
    if label.startswith("[") and label.endswith("]"):
        variants.add(label[1:-1])
    variants.discard(label)
    return sorted(variants)


def _pattern(phrase: str) -> re.Pattern[str]:
    # Whole-phrase match: not inside a longer word or hyphenated word; any whitespace between words.
    body = r"\s+".join(re.escape(word) for word in phrase.split())
    return re.compile(rf"(?<![\w-]){body}(?![\w-])", re.IGNORECASE)


@lru_cache(maxsize=64)
def _patterns(labels: tuple[str, ...]) -> tuple[list[tuple[re.Pattern[str], str]], ...]:
    canonical = [(_pattern(label), label) for label in labels]
    aliases = [(_pattern(alias), label) for label in labels for alias in _aliases(label)]
    return canonical, aliases


def _unique_match(text: str, patterns: list[tuple[re.Pattern[str], str]]) -> str | None:
    """The one label whose phrase occurs in `text`, ignoring occurrences inside a longer matched
    phrase ("comedy" inside "dark comedy"); None when no label or several labels occur."""
    spans = [(m.start(), m.end(), label)
             for pattern, label in patterns for m in pattern.finditer(text)]
    outer = {label for start, end, label in spans
             if not any(s <= start and end <= e and (e - s) > (end - start) for s, e, _ in spans)}
    return outer.pop() if len(outer) == 1 else None


def parse_label(text: str | None, labels: Sequence[str]) -> str | None:
    """Map an answer to exactly one of `labels`, case-insensitively, or None.

    In order: the whole answer (quotes and punctuation stripped) is a label or an alias; else
    exactly one label occurs in it as a whole phrase; else exactly one alias does. Aliases: "&"
    written "and", "-" written as a space, "[1]" written "1".
    """
    if text is None:
        return None
    bare = text.strip(_WRAPPING).casefold()
    canonical, aliases = _patterns(tuple(labels))
    for pattern, label in canonical + aliases:
        if pattern.fullmatch(bare):
            return label
    return _unique_match(text, canonical) or _unique_match(text, aliases)


def parse_rating(text: str | None, low: int = 1, high: int = 5) -> str | None:
    """The first number in the answer that is a whole number in [low, high], as a string."""
    if text is None:
        return None
    for match in _NUMBER.finditer(text):
        value = float(match.group())
        if value.is_integer() and low <= value <= high:
            return str(int(value))
    return None


def parse_generation(text: str | None) -> str | None:
    """The answer with surrounding whitespace removed; None when nothing is left."""
    if text is None:
        return None
    stripped = text.strip()
    return stripped or None
