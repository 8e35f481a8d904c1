"""Choosing the selection guard's threshold on TRAINING users' held-out queries (never test users).

Each calibration row is one held-out query of a training user that HYDRA answered: its candidates,
the adapter's scores of them and the gold. For every threshold of a grid, the guard's pick (see
`hydralm.pipeline.selection`) is scored against the gold by the task's primary metric; the
threshold with the best mean wins, ties going to the smaller one (fewer fallbacks). Given several
fallback rules (the eval's `guard.rule: auto`), each rule's best threshold competes and the better
mean wins, ties going to the rule listed first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from hydralm.evaluation.reference import closeness
from hydralm.pipeline.selection import FallbackRule, SelectionGuard, select_candidate

__all__ = ["SPREAD_GRID", "CalibrationRow", "GuardChoice", "choose_guard"]

# Thresholds on the spread (max - min) of the adapter's scores of one query's candidates (in
# [0, 1]): fitted heads spread their scores over the whole range, jointly trained ones narrowly.
SPREAD_GRID: tuple[float, ...] = (0.0, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3,
                                  0.5, 0.8, 1.0)


@dataclass(frozen=True)
class CalibrationRow:
    candidates: list[str]
    scores: list[float]
    gold: str


@dataclass(frozen=True)
class GuardChoice:
    """The chosen threshold and rule, and per threshold (of the chosen rule) the mean metric and
    the fallback rate; `metric_by_rule` is each rule's best mean."""

    min_spread: float
    queries: int
    metric_by_threshold: dict[str, float]
    fallback_rate_by_threshold: dict[str, float]
    rule: FallbackRule = "consensus"
    metric_by_rule: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"min_spread": self.min_spread, "rule": self.rule, "queries": self.queries,
                "metric_by_threshold": self.metric_by_threshold,
                "fallback_rate_by_threshold": self.fallback_rate_by_threshold,
                "metric_by_rule": self.metric_by_rule}


def choose_guard(task, rows: Sequence[CalibrationRow], *,
                 rule: FallbackRule | Sequence[FallbackRule] = "consensus",
                 grid: Sequence[float] = SPREAD_GRID) -> GuardChoice:
    """The threshold of `grid` (and the rule of `rule`, when several are given) whose guarded
    picks score best on `rows` (0.0 without rows)."""
    rules: list[FallbackRule] = [rule] if isinstance(rule, str) else list(rule)
    usable = [r for r in rows if len(r.candidates) > 1 and len(r.scores) == len(r.candidates)]
    if not usable:
        return GuardChoice(0.0, 0, {}, {}, rules[0])
    choices = [_choose_threshold(task, usable, r, grid) for r in rules]
    best = max(range(len(rules)), key=lambda i: (
        round(choices[i].metric_by_threshold[str(choices[i].min_spread)], 12), -i))
    metric_by_rule = {c.rule: c.metric_by_threshold[str(c.min_spread)] for c in choices}
    return replace(choices[best], metric_by_rule=metric_by_rule)


def _choose_threshold(task, usable: Sequence[CalibrationRow], rule: FallbackRule,
                      grid: Sequence[float]) -> GuardChoice:
    parse = task.parse if task.labels else None
    metric, fallbacks = {}, {}
    for threshold in sorted(grid):
        guard = SelectionGuard(min_spread=threshold, rule=rule)
        total = fell_back = 0.0
        for row in usable:
            picked = select_candidate(row.candidates, row.scores, guard, parse=parse)
            total += closeness(task, task.parse(row.candidates[picked.index]), row.gold)
            fell_back += picked.how == "fallback"
        metric[str(threshold)] = total / len(usable)
        fallbacks[str(threshold)] = fell_back / len(usable)
    best = max(sorted(grid), key=lambda t: (round(metric[str(t)], 12), -t))
    return GuardChoice(best, len(usable), metric, fallbacks, rule)
