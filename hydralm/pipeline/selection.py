"""Choosing among the adapter's candidates, with a guard against a collapsed selection.

The adapter's pick is the argmax of its scores. When a user's head scores every candidate nearly the
same (a spread `max - min` below `SelectionGuard.min_spread`), that argmax is decided by noise, so
the pick falls back to a rule that needs no head:

- "consensus" (default): the candidate the others agree with most. For tasks with a label set
  (classification, rating) the most frequent parsed answer; for generation the candidate with the
  highest mean unigram F1 against the other candidates (minimum-Bayes-risk selection). Ties go to
  the higher adapter score, then the earlier candidate.
- "first": candidate 0 (the greedy answer when the sampling policy puts it first: the bare query's
  with `bare_greedy`, the zero-shot answer).

A pick scored by a zero-fit head (hydralm/model/zero_fit.py) has a guard of its own when one is
given (`SelectionGuard.zero_fit`): a mixture of other users' heads spreads its scores unlike a
fitted head, so the eval chooses its threshold and rule separately.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = ["FallbackRule", "Selection", "SelectionGuard", "consensus_index", "select_candidate"]

FallbackRule = Literal["consensus", "first"]
_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class SelectionGuard:
    """When the adapter's pick counts as collapsed (spread below `min_spread`; 0: never) and
    which rule replaces it."""

    min_spread: float = 0.0
    rule: FallbackRule = "consensus"
    # the guard of picks scored by a zero-fit head (a mixture of other users' heads: its scores
    # spread differently from a fitted head's); None: this one
    zero_fit: SelectionGuard | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_spread <= 1.0:
            raise ValueError(f"min_spread must be in [0, 1], got {self.min_spread!r}")
        if self.rule not in ("consensus", "first"):
            raise ValueError(f"rule must be 'consensus' or 'first', got {self.rule!r}")
        if self.zero_fit is not None and self.zero_fit.zero_fit is not None:
            raise ValueError("a zero-fit guard has no zero-fit guard of its own")

    def for_head(self, head: str | None) -> SelectionGuard:
        """The guard of a pick scored by `head` ("user", "zero_fit" or "global")."""
        return self.zero_fit if head == "zero_fit" and self.zero_fit is not None else self


@dataclass(frozen=True)
class Selection:
    index: int
    how: Literal["adapter", "fallback"]


def _unigram_f1(a: Counter, b: Counter) -> float:
    overlap = sum((a & b).values())
    if not overlap:
        return 0.0
    precision, recall = overlap / sum(a.values()), overlap / sum(b.values())
    return 2 * precision * recall / (precision + recall)


def consensus_index(candidates: Sequence[str], scores: Sequence[float], *,
                    parse: Callable[[str], str | None] | None = None) -> int:
    """The candidate the others agree with most (see the module docstring); `parse` given: by
    parsed answer (label tasks), else by mean unigram F1 with the other candidates."""
    if not candidates:
        raise ValueError("consensus_index needs at least one candidate, got none")
    if parse is not None:
        parsed = [parse(c) for c in candidates]
        votes = Counter(p for p in parsed if p is not None)
        agreement = [float(votes[p]) if p is not None else 0.0 for p in parsed]
    else:
        bags = [Counter(_WORD.findall(c.lower())) for c in candidates]
        others = max(1, len(bags) - 1)
        agreement = [sum(_unigram_f1(bag, other) for j, other in enumerate(bags) if j != i)
                     / others for i, bag in enumerate(bags)]
    return max(range(len(candidates)), key=lambda i: (agreement[i], scores[i], -i))


def select_candidate(candidates: Sequence[str], scores: Sequence[float], guard: SelectionGuard,
                     *, parse: Callable[[str], str | None] | None = None) -> Selection:
    """The adapter's argmax (ties to the earlier candidate), or the guard's rule when the scores'
    spread is below `guard.min_spread`."""
    if len(candidates) != len(scores) or not candidates:
        raise ValueError(f"need one score per candidate and at least one candidate, got "
                         f"{len(candidates)} candidates and {len(scores)} scores")
    if len(candidates) > 1 and max(scores) - min(scores) < guard.min_spread:
        index = 0 if guard.rule == "first" else consensus_index(candidates, scores, parse=parse)
        return Selection(index, "fallback")
    return Selection(max(range(len(candidates)), key=lambda i: (scores[i], -i)), "adapter")
