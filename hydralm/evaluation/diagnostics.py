"""How well HYDRA's adapter selects among its candidates, against chance and a majority vote.

When HYDRA does not beat the prompt-only methods, these numbers say where the gap is: candidates
that rarely contain a good answer (generation), or an adapter no better than picking at random
(selection). They use only the queries' golds after the fact; nothing here feeds back into a run.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from hydralm.evaluation.bootstrap import Estimate, estimate_interval, resample_indices
from hydralm.evaluation.reference import closeness
from hydralm.evaluation.runner import QueryOutcome
from hydralm.pipeline.selection import SelectionGuard, select_candidate

__all__ = ["fallback_rates", "selection_diagnostics", "selection_margin"]


def _majority(parsed: list[str | None]) -> str | None:
    counts = Counter(p for p in parsed if p is not None)
    if not counts:
        return None
    best = max(counts.values())
    return next(p for p in parsed if p is not None and counts[p] == best)


def selection_diagnostics(task, outcomes: Sequence[QueryOutcome]) -> dict[str, float | int]:
    """Over the queries with HYDRA candidates: how often a best candidate (by the primary metric)
    is among them, how often the adapter's own pick (the argmax of its scores, before any
    selection guard) is one and how often HYDRA's answer (after the guard) is, how often a
    uniformly random pick would be, and the primary metric of a majority vote over the candidates
    (self-consistency)."""
    rows = [o for o in outcomes if o.candidates]
    if not rows:
        return {"queries": 0}
    gold_among = adapter_best = hydra_best = 0
    chance = 0.0
    votes, golds = [], []
    for o in rows:
        parsed, top, hydra, adapter, share = _picks(task, o)
        gold_among += task.kind == "classification" and top == 1.0
        hydra_best += hydra
        adapter_best += adapter
        chance += share
        votes.append(_majority(parsed))
        golds.append(o.gold)
    n = len(rows)
    classification = task.kind == "classification"
    return {"queries": n, "gold_among_candidates": gold_among / n if classification else None,
            "adapter_picks_best": adapter_best / n, "hydra_picks_best": hydra_best / n,
            "random_picks_best": chance / n,
            f"majority_vote_{task.primary_metric}": task.score(votes, golds)[task.primary_metric]}


def _picks(task, o: QueryOutcome) -> tuple[list[str | None], float, bool, bool, float]:
    """One query's candidates scored against its gold: (the parsed candidates, the best
    closeness, whether HYDRA's answer is a best candidate, whether the adapter's own pick (the
    argmax of its scores, the guard off; HYDRA's answer where there are no adapter scores) is
    one, the share of best candidates: a random pick's chance)."""
    parsed = [task.parse(c) for c in o.candidates]
    values = [closeness(task, p, o.gold) for p in parsed]
    top = max(values)
    hydra = closeness(task, o.answers.get("hydra"), o.gold) == top
    adapter = hydra
    if len(o.adapter_scores) == len(values):
        adapter = values[select_candidate(o.candidates, o.adapter_scores,
                                          SelectionGuard()).index] == top
    return parsed, top, hydra, adapter, sum(v == top for v in values) / len(values)


def _margins(task, outcomes: Sequence[QueryOutcome]) -> np.ndarray:
    """Per query with candidates: 1 if the adapter picked a best candidate, minus a random
    pick's chance."""
    picks = [_picks(task, o) for o in outcomes if o.candidates]
    return np.asarray([float(adapter) - share for _, _, _, adapter, share in picks], dtype=float)


def selection_margin(task, runs: Sequence[Sequence[QueryOutcome]], *, resamples: int = 1000,
                     confidence: float = 0.95, seed: int = 0) -> Estimate | None:
    """The adapter's margin over a random pick (`adapter_picks_best - random_picks_best` of
    `selection_diagnostics` over every run's queries pooled) with a bootstrap interval: each
    replicate resamples every run's (seed's) queries as `bootstrap` does. None without
    candidates."""
    per_run = [m for m in (_margins(task, run) for run in runs) if m.size]
    if not per_run:
        return None
    total = sum(m.size for m in per_run)
    replicates = sum(m[resample_indices(m.size, resamples, seed + k)].sum(axis=1)
                     for k, m in enumerate(per_run)) / total
    return estimate_interval(float(sum(m.sum() for m in per_run) / total), replicates,
                             confidence)


def fallback_rates(outcomes: Sequence[QueryOutcome]) -> dict[str, dict[str, float]]:
    """How often the selection guard replaced the adapter's pick: per adapter method, and per
    user (over that user's adapter-method answers)."""
    by_method: dict[str, list[bool]] = {}
    by_user: dict[str, list[bool]] = {}
    for o in outcomes:
        for method, how in o.selections.items():
            by_method.setdefault(method, []).append(how == "fallback")
            by_user.setdefault(o.user_id, []).append(how == "fallback")
    return {"by_method": {m: sum(f) / len(f) for m, f in sorted(by_method.items())},
            "by_user": {u: sum(f) / len(f) for u, f in sorted(by_user.items())}}
