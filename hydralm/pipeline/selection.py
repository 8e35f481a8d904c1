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
- "history": the candidate that agrees most with the user's own answers of the history items most
  like the query (their targets: the tags, scores or titles the user gave them; the prompt's
  items, or BM25's top k_prompt where the prompt holds none): for label tasks the parsed answer
  the most of those items carry, for generation the highest mean unigram F1 against them. Ties
  (and a user without history) go to "consensus". Beyond the paper: the user's history decides
  where the head cannot.

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

__all__ = ["FALLBACK_RULES", "FallbackRule", "Selection", "SelectionGuard", "consensus_index",
           "history_index", "select_candidate"]

FallbackRule = Literal["consensus", "first", "history"]
FALLBACK_RULES: tuple[FallbackRule, ...] = ("consensus", "first", "history")
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
        if self.rule not in FALLBACK_RULES:
            raise ValueError(f"rule must be one of {', '.join(FALLBACK_RULES)}, "
                             f"got {self.rule!r}")
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


def _agreement(candidates: Sequence[str], others: Sequence[str] | None, *,
               parse: Callable[[str], str | None] | None) -> list[float]:
    """Per candidate, how much `others` agree with it (None: the candidates themselves): the
    votes for its parsed answer (`parse` given; among the candidates a candidate's own vote counts,
    the same +1 for every parsed one; an unparseable candidate gets 0), else its mean unigram F1
    against them (among the candidates, against the others)."""
    if parse is not None:
        parsed = [parse(c) for c in candidates]
        votes = Counter(p for p in (parsed if others is None else map(parse, others))
                        if p is not None)
        return [float(votes[p]) if p is not None else 0.0 for p in parsed]
    bags = [Counter(_WORD.findall(c.lower())) for c in candidates]
    if others is None:
        pools = [[o for j, o in enumerate(bags) if j != i] for i in range(len(bags))]
    else:
        pools = [[Counter(_WORD.findall(o.lower())) for o in others]] * len(bags)
    return [sum(_unigram_f1(bag, o) for o in pool) / max(1, len(pool))
            for bag, pool in zip(bags, pools, strict=True)]


def consensus_index(candidates: Sequence[str], scores: Sequence[float], *,
                    parse: Callable[[str], str | None] | None = None) -> int:
    """The candidate the others agree with most (see the module docstring); `parse` given: by
    parsed answer (label tasks), else by mean unigram F1 with the other candidates."""
    if not candidates:
        raise ValueError("consensus_index needs at least one candidate, got none")
    agreement = _agreement(candidates, None, parse=parse)
    return max(range(len(candidates)), key=lambda i: (agreement[i], scores[i], -i))


def history_index(candidates: Sequence[str], scores: Sequence[float], history: Sequence[str], *,
                  parse: Callable[[str], str | None] | None = None) -> int:
    """The candidate that agrees most with `history` (the user's answers of the history items
    most like the query; see the module docstring), ties to `consensus_index`'s order."""
    if not candidates:
        raise ValueError("history_index needs at least one candidate, got none")
    mine = _agreement(candidates, history, parse=parse)
    theirs = _agreement(candidates, None, parse=parse)
    return max(range(len(candidates)), key=lambda i: (mine[i], theirs[i], scores[i], -i))


def select_candidate(candidates: Sequence[str], scores: Sequence[float], guard: SelectionGuard,
                     *, parse: Callable[[str], str | None] | None = None,
                     history: Sequence[str] = ()) -> Selection:
    """The adapter's argmax (ties to the earlier candidate), or the guard's rule when the scores'
    spread is below `guard.min_spread`. `history`: the user's answers of the history items most
    like the query (the "history" rule's reference)."""
    if len(candidates) != len(scores) or not candidates:
        raise ValueError(f"need one score per candidate and at least one candidate, got "
                         f"{len(candidates)} candidates and {len(scores)} scores")
    if len(candidates) > 1 and max(scores) - min(scores) < guard.min_spread:
        if guard.rule == "first":
            index = 0
        elif guard.rule == "history":
            index = history_index(candidates, scores, history, parse=parse)
        else:
            index = consensus_index(candidates, scores, parse=parse)
        return Selection(index, "fallback")
    return Selection(max(range(len(candidates)), key=lambda i: (scores[i], -i)), "adapter")
