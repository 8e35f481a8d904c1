"""A variant of HYDRA in the same eval: the HYDRA methods scored a second time, on the same test
queries through the same generator, history and selection guard, with one thing changed.

Two variants exist:

- **precision** (`EvalConfig.compare_precision`): the same trained bases and heads with the frozen
  bases in the other number format (rows such as `hydra_fp32`). Heads are fitted once, in
  `precision`: what changes is what a deployment switching precision changes.
- **head form** (`EvalConfig.compare_head`): the same trained bases and global heads, the test
  users' heads fitted again in another form (rows such as `hydra_residual8_bf16`), on the same
  labels with the same fit settings. What changes is what a deployment storing compact heads for
  its new users changes; the training users' jointly trained heads are not part of the
  comparison. Where the guard is calibrated on fitted heads (`guard.heads: fitted`), the training
  users' calibration heads (fitted from their own history as a new user's are) are fitted in the
  other form too, and the comparison is made on their held-out queries as well
  (`head_comparison(..., on_training=...)`, the part `train_heldout`): that part is what chooses
  a form, without looking at test users (`passes_form_rule`).

Each seed's HYDRA methods (those that use a trained head: `needs_scorer`) run once as configured
and once as the variant. The generator's response cache answers every prompt both runs share, so
where the reranker retrieves the same history items the adapter chooses among the very same
candidates. The result holds, per method, the paired bootstrap difference of the primary metric
(same resampled queries; positive: the configured run better), how often both runs saw the same
candidates, and the largest adapter-score difference on those (`precision_comparison`,
`head_comparison`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from hydralm.evaluation.bootstrap import bootstrap_difference
from hydralm.evaluation.runner import QueryOutcome, needs_scorer
from hydralm.evaluation.scores import QueryScores
from hydralm.model.config import HeadConfig

__all__ = ["FORM_RULE_TOLERANCE", "compared_methods", "head_comparison", "head_tag",
           "merge_variant_run", "passes_form_rule", "precision_comparison", "variant_row"]

_DTYPE_TAGS = {"float32": "fp32", "bfloat16": "bf16", "int8": "int8"}

# How much worse (in primary-metric units) a compact head form may measure and still be chosen
FORM_RULE_TOLERANCE = 0.01


def passes_form_rule(difference: Mapping[str, float],
                     tolerance: float = FORM_RULE_TOLERANCE) -> bool:
    """Whether a paired difference (configured minus compact, positive: the configured heads
    better) lets the compact form replace the configured one: its interval reaches 0 or below
    (the compact form not measurably worse) and its mean is at most `tolerance`."""
    return difference["ci_low"] <= 0.0 and difference["mean"] <= tolerance


def variant_row(method: str, tag: str) -> str:
    """The row of `method` in the variant `tag`, e.g. hydra_fp32 or hydra_residual8_bf16."""
    return f"{method}_{tag}"


def head_tag(head: HeadConfig) -> str:
    """A head form as a row suffix: dense_fp32, residual8_bf16, lowrank4_int8."""
    rank = str(head.rank) if head.form != "dense" else ""
    return f"{head.form}{rank}_{_DTYPE_TAGS[head.dtype]}"


def compared_methods(methods: Sequence[str]) -> list[str]:
    """The methods a variant changes: those that use the test users' fitted heads (not
    hydra_zero_fit, which mixes the training users' heads instead)."""
    return [m for m in methods if needs_scorer(m) and m != "hydra_zero_fit"]


def merge_variant_run(outcomes: Sequence[QueryOutcome], other: Sequence[QueryOutcome],
                      tag: str) -> dict[str, Any]:
    """Add `other`'s answers (the same queries, in the same order, from the variant `tag`) to
    `outcomes` as rows `<method>_<tag>`; returns what the two runs shared: queries whose HYDRA
    candidates were identical and the largest adapter-score difference on those."""
    same, largest = 0, 0.0
    for mine, theirs in zip(outcomes, other, strict=True):
        if (mine.user_id, mine.query_id) != (theirs.user_id, theirs.query_id):
            raise ValueError(f"{tag} run out of step: query {mine.query_id!r} of "
                             f"{mine.user_id!r} against {theirs.query_id!r} of {theirs.user_id!r}")
        for method in theirs.raw:
            row = variant_row(method, tag)
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


def _comparison(scores: Mapping[str, Sequence[QueryScores]], methods: Sequence[str], tag: str,
                *, metric: str, higher_is_better: bool, shared: Sequence[Mapping[str, Any]],
                **bootstrap_options: Any) -> dict[str, Any]:
    """Per compared method, the configured run minus the variant `tag` on `metric` with its
    paired interval (positive: the configured run better, whichever way the metric points);
    `shared` are the seeds' `merge_variant_run` summaries, pooled."""
    differences = {}
    for method in compared_methods(methods):
        mine, theirs = scores[method], scores[variant_row(method, tag)]
        better, worse = (mine, theirs) if higher_is_better else (theirs, mine)
        differences[method] = bootstrap_difference(better, worse, metric,
                                                   **bootstrap_options).to_dict()
    return {"metric": metric, "higher_is_better": higher_is_better, "differences": differences,
            "queries": sum(s["queries"] for s in shared),
            "same_candidates": sum(s["same_candidates"] for s in shared),
            "adapter_score_max_abs_diff": max(
                (s["adapter_score_max_abs_diff"] for s in shared), default=0.0)}


def precision_comparison(scores: Mapping[str, Sequence[QueryScores]], methods: Sequence[str], *,
                         precision: str, other: str, metric: str, higher_is_better: bool,
                         shared: Sequence[Mapping[str, Any]] = (),
                         **bootstrap_options: Any) -> dict[str, Any]:
    """`precision` against the rows `<method>_<other>` (positive: `precision` better)."""
    return {"precision": precision, "other": other,
            **_comparison(scores, methods, other, metric=metric,
                          higher_is_better=higher_is_better, shared=shared, **bootstrap_options)}


def head_comparison(scores: Mapping[str, Sequence[QueryScores]], methods: Sequence[str], *,
                    heads: Mapping[str, Any], other: HeadConfig,
                    bytes_per_user: Mapping[str, Mapping[str, int]], metric: str,
                    higher_is_better: bool, shared: Sequence[Mapping[str, Any]] = (),
                    on_training: tuple[Mapping[str, Sequence[QueryScores]],
                                       Sequence[Mapping[str, Any]]] | None = None,
                    **bootstrap_options: Any) -> dict[str, Any]:
    """The configured heads (`heads`: kind -> HeadConfig dump) against the test users' heads
    refitted as `other` (rows `<method>_<head_tag(other)>`; positive: the configured heads
    better); `bytes_per_user`: {"configured"|"other": {kind: bytes of one head file}}.
    `on_training`: (scores, shared) of the same rows on the training users' held-out queries,
    reported as `train_heldout`. Each part says per method whether the compact form `passes`
    (`passes_form_rule`; a per-kind choice reads hydra_reranker and hydra_adapter)."""
    tag = head_tag(other)

    def part(part_scores, part_shared) -> dict[str, Any]:
        cmp = _comparison(part_scores, methods, tag, metric=metric,
                          higher_is_better=higher_is_better, shared=part_shared,
                          **bootstrap_options)
        return {**cmp, "passes": {m: passes_form_rule(d) for m, d in cmp["differences"].items()}}

    out = {"heads": dict(heads), "other": other.model_dump(mode="json"), "tag": tag,
           "bytes_per_user": {k: dict(v) for k, v in bytes_per_user.items()},
           **part(scores, shared)}
    if on_training is not None:
        out["train_heldout"] = part(*on_training)
    return out
