"""Choosing the selection guard's threshold on TRAINING users' held-out queries (never test users).

Each calibration row is one held-out query of a training user that HYDRA answered: its candidates,
the adapter's scores of them, the gold and the user's answers of the history items most like the
query (`PersonalizeResult.history_answers`). For every threshold of a grid and every fallback rule
given (the eval's `guard.rule: auto` gives all three), the guard's pick (see
`hydralm.pipeline.selection`) is scored against the gold by the task's primary metric. A few dozen
queries decide, so the best of some thirty means is partly noise; the choice is therefore:

- the default is the better of the grid's ends: no guard (threshold 0: the adapter always picks) or
  a rule that always falls back (the largest threshold), ties to no guard; an option scoring exactly
  as the default on every query stands in for it with fewer fallbacks;
- the option with the best mean (ties: the smaller threshold, then the rule listed first) replaces
  the default only when its paired per-query gain over it exceeds `SE_MARGIN` standard errors
  (`hydralm.stats.clear_gain`, the rule the zero-fit k is chosen by).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from hydralm.evaluation.reference import closeness
from hydralm.pipeline.selection import FallbackRule, SelectionGuard, select_candidate
from hydralm.stats import SE_MARGIN, clear_gain, mean_and_se

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
    history: list[str] = field(default_factory=list)   # PersonalizeResult.history_answers


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
    # the default (the better end of the grid), the best-mean option and the paired per-query
    # gain of the best over the default, with its standard error and the margin it needed
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"min_spread": self.min_spread, "rule": self.rule, "queries": self.queries,
                "metric_by_threshold": self.metric_by_threshold,
                "fallback_rate_by_threshold": self.fallback_rate_by_threshold,
                "metric_by_rule": self.metric_by_rule, "evidence": self.evidence}


def choose_guard(task, rows: Sequence[CalibrationRow], *,
                 rule: FallbackRule | Sequence[FallbackRule] = "consensus",
                 grid: Sequence[float] = SPREAD_GRID, margin: float = SE_MARGIN) -> GuardChoice:
    """The guard (threshold of `grid`, rule of `rule`) for `rows` (see the module docstring: the
    better end of the grid unless a threshold between beats it by `margin` standard errors of the
    paired per-query gain; off without rows)."""
    rules: list[FallbackRule] = [rule] if isinstance(rule, str) else list(rule)
    usable = [r for r in rows if len(r.candidates) > 1 and len(r.scores) == len(r.candidates)]
    if not usable:
        return GuardChoice(0.0, 0, {}, {}, rules[0])
    grid = sorted(grid)
    metric: dict[tuple[FallbackRule, float], list[float]] = {}   # (rule, threshold) -> per row
    fallbacks: dict[FallbackRule, dict[float, float]] = {}
    for r in rules:
        per_threshold, fallbacks[r] = _per_query(task, usable, r, grid)
        metric.update({(r, t): values for t, values in per_threshold.items()})

    def mean(option: tuple[FallbackRule, float]) -> float:
        return round(sum(metric[option]) / len(usable), 12)

    # every option in preference order: fewer fallbacks first, then the rule listed first
    options = [(r, t) for t in grid for r in rules]
    ends = [(rules[0], grid[0]), *((r, grid[-1]) for r in rules)]
    default = max(ends, key=lambda o: (mean(o), -ends.index(o)))
    # an option scoring exactly as the default on every query is the default, with fewer fallbacks
    default = next(o for o in options if metric[o] == metric[default])
    best = max(options, key=lambda o: (mean(o), -options.index(o)))
    gains = [b - d for b, d in zip(metric[best], metric[default], strict=True)]
    gain, se = mean_and_se(gains)
    rule_chosen, threshold = best if best != default and clear_gain(gains, margin) else default
    return GuardChoice(
        threshold, len(usable),
        {str(t): sum(metric[rule_chosen, t]) / len(usable) for t in grid},
        {str(t): f for t, f in fallbacks[rule_chosen].items()}, rule_chosen,
        {r: max(sum(metric[r, t]) / len(usable) for t in grid) for r in rules},
        {"default": {"rule": default[0], "min_spread": default[1]},
         "best": {"rule": best[0], "min_spread": best[1]},
         "gain": gain, "se": None if math.isnan(se) else se, "margin": margin})


def _per_query(task, usable: Sequence[CalibrationRow], rule: FallbackRule,
               grid: Sequence[float]) -> tuple[dict[float, list[float]], dict[float, float]]:
    """Per threshold: each row's metric with the guarded pick, and the fallback rate."""
    parse = task.parse if task.labels else None
    metric, fallbacks = {}, {}
    for threshold in grid:
        guard = SelectionGuard(min_spread=threshold, rule=rule)
        picks = [select_candidate(row.candidates, row.scores, guard, parse=parse,
                                  history=row.history) for row in usable]
        metric[threshold] = [closeness(task, task.parse(row.candidates[p.index]), row.gold)
                             for row, p in zip(usable, picks, strict=True)]
        fallbacks[threshold] = sum(p.how == "fallback" for p in picks) / len(usable)
    return metric, fallbacks
