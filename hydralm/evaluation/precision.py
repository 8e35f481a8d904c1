"""bf16 against fp32 in one eval: the same trained bases and heads, the same test queries, the
HYDRA methods scored a second time with the frozen bases in the other precision.

With `EvalConfig.compare_precision` set, each seed's HYDRA methods (those that use a trained head:
`needs_scorer`) run twice through the same generator, history and selection guard: once with the
scorer in `precision` (the rows `hydra`, `hydra_adapter`, ...), once in `compare_precision` (rows
`hydra_fp32`, ... beside them). The generator's response cache answers every prompt both runs
share, so where the reranker retrieves the same history items the adapter chooses among the very
same candidates. The result's `precision_comparison` holds, per method, the paired bootstrap
difference of the primary metric (same resampled queries; positive: `precision` better), how
often both runs saw the same candidates, and the largest adapter-score difference on those.
Heads are fitted once, in `precision`: what changes is the base encoders' number format at
scoring time, which is what a deployment switching precision changes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from hydralm.evaluation.bootstrap import bootstrap_difference
from hydralm.evaluation.runner import QueryOutcome, needs_scorer
from hydralm.evaluation.scores import QueryScores

__all__ = ["compared_methods", "merge_precision_run", "precision_comparison", "precision_row"]


def precision_row(method: str, precision: str) -> str:
    """The row of `method` scored in `precision`, e.g. hydra_fp32."""
    return f"{method}_{precision}"


def compared_methods(methods: Sequence[str]) -> list[str]:
    """The methods a precision changes: those that use a trained head."""
    return [m for m in methods if needs_scorer(m)]


def merge_precision_run(outcomes: Sequence[QueryOutcome], other: Sequence[QueryOutcome],
                        precision: str) -> dict[str, Any]:
    """Add `other`'s answers (the same queries, in the same order, scored in `precision`) to
    `outcomes` as rows `<method>_<precision>`; returns what the two runs shared: queries whose
    HYDRA candidates were identical and the largest adapter-score difference on those."""
    same, largest = 0, 0.0
    for mine, theirs in zip(outcomes, other, strict=True):
        if (mine.user_id, mine.query_id) != (theirs.user_id, theirs.query_id):
            raise ValueError(f"precision runs out of step: query {mine.query_id!r} of "
                             f"{mine.user_id!r} against {theirs.query_id!r} of {theirs.user_id!r}")
        for method in theirs.raw:
            row = precision_row(method, precision)
            mine.answers[row], mine.raw[row] = theirs.answers[method], theirs.raw[method]
            if method in theirs.heads:
                mine.heads[row] = theirs.heads[method]
            if method in theirs.selections:
                mine.selections[row] = theirs.selections[method]
        if mine.candidates and mine.candidates == theirs.candidates:
            same += 1
            largest = max([largest, *(abs(a - b) for a, b in zip(
                mine.adapter_scores, theirs.adapter_scores, strict=True))])
    return {"queries": len(outcomes), "same_candidates": same,
            "adapter_score_max_abs_diff": largest}


def precision_comparison(scores: Mapping[str, Sequence[QueryScores]], methods: Sequence[str], *,
                         precision: str, other: str, metric: str, higher_is_better: bool,
                         shared: Sequence[Mapping[str, Any]] = (),
                         **bootstrap_options: Any) -> dict[str, Any]:
    """Per compared method, `precision` minus `other` on `metric` with its paired interval
    (positive: `precision` better, whichever way the metric points); `shared` are the seeds'
    `merge_precision_run` summaries, pooled."""
    differences = {}
    for method in compared_methods(methods):
        mine, theirs = scores[method], scores[precision_row(method, other)]
        better, worse = (mine, theirs) if higher_is_better else (theirs, mine)
        differences[method] = bootstrap_difference(better, worse, metric,
                                                   **bootstrap_options).to_dict()
    return {"precision": precision, "other": other, "metric": metric,
            "higher_is_better": higher_is_better, "differences": differences,
            "queries": sum(s["queries"] for s in shared),
            "same_candidates": sum(s["same_candidates"] for s in shared),
            "adapter_score_max_abs_diff": max(
                (s["adapter_score_max_abs_diff"] for s in shared), default=0.0)}
