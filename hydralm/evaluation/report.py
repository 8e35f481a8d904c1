"""The quality result: its JSON document (and schema), HYDRA's relative improvement, the Markdown
table.

The document (`benchmarks/results/quality_<dataset>_<task>.json`):
`{"dataset", "task", "generator", "users": {"train", "test"}, "seeds", "primary_metric",
"methods": {METHOD: {METRIC: {"mean", "ci_low", "ci_high"}}}, "relative_improvement",
"selection", "precision_comparison", "run"}`; `selection` (over every seed's queries with HYDRA
candidates) holds how often the adapter picks a best candidate against a uniformly random pick,
and their difference; `precision_comparison` (only with `compare_precision`) the paired
differences of the HYDRA rows between two precisions, `head_comparison` (only with
`compare_head`) between two head forms (both: hydralm/evaluation/variants.py);
`run` holds how it was made (config, queries, timings, generator calls and cache hits) and is the
only part that may differ between two runs of the same configuration.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from hydralm.evaluation.bootstrap import Estimate
from hydralm.evaluation.variants import FORM_RULE_TOLERANCE

__all__ = [
    "PROMPT_BASELINES",
    "RESULT_SCHEMA",
    "build_result",
    "markdown_table",
    "relative_improvement",
]

# The prompt-only methods HYDRA is compared with (the paper's "best prompt-based method").
PROMPT_BASELINES: tuple[str, ...] = ("zero_shot", "icl_random", "rag_bm25")

_ESTIMATE = {"type": "object", "required": ["mean", "ci_low", "ci_high"],
             "additionalProperties": False,
             "properties": {k: {"type": "number"} for k in ("mean", "ci_low", "ci_high")}}
# HYDRA rows may carry a variant's suffix: a precision (_fp32) and/or a head form (_residual8_bf16)
_METHOD_NAMES = ("^(zero_shot|icl_random|rag_bm25|(hydra_reranker|hydra_adapter|hydra)"
                 "(_bf16|_fp32)?(_(dense|lowrank[0-9]+|residual[0-9]+)_(fp32|bf16|int8))?"
                 "|hydra_zero_fit|history_knn|oracle_best_of_[0-9]+)$")

_PASSES = {"type": "object", "additionalProperties": {"type": "boolean"}}


def _comparison_schema(own: dict[str, Any],
                       optional: dict[str, Any] | None = None) -> dict[str, Any]:
    """A variant comparison (hydralm/evaluation/variants.py): `own` fields plus the shared ones
    (all required), and `optional` ones."""
    shared = {"metric": {"type": "string"}, "higher_is_better": {"type": "boolean"},
              "differences": {"type": "object", "additionalProperties": _ESTIMATE},
              "queries": {"type": "integer", "minimum": 0},
              "same_candidates": {"type": "integer", "minimum": 0},
              "adapter_score_max_abs_diff": {"type": "number", "minimum": 0}}
    return {"type": "object", "required": [*own, *shared],
            "properties": {**own, **shared, **(optional or {})}}


RESULT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "hydralm quality result",
    "type": "object",
    "required": ["dataset", "task", "generator", "users", "seeds", "primary_metric", "methods",
                 "relative_improvement"],
    "additionalProperties": False,
    "properties": {
        "dataset": {"type": "string", "minLength": 1},
        "task": {"type": "string", "minLength": 1},
        "generator": {"type": "string", "minLength": 1},
        "users": {"type": "object", "required": ["train", "test"], "additionalProperties": False,
                  "properties": {"train": {"type": "integer", "minimum": 0},
                                 "test": {"type": "integer", "minimum": 1}}},
        "seeds": {"type": "array", "items": {"type": "integer"}, "minItems": 1},
        "primary_metric": {"type": "string"},
        "methods": {"type": "object", "minProperties": 1,
                    "propertyNames": {"pattern": _METHOD_NAMES},
                    "additionalProperties": {"type": "object", "minProperties": 1,
                                             "additionalProperties": _ESTIMATE}},
        "relative_improvement": {
            "type": ["object", "null"],
            "required": ["metric", "baseline", "baseline_value", "hydra_value", "percent"],
            "properties": {"metric": {"type": "string"}, "baseline": {"enum":
                                                                      list(PROMPT_BASELINES)},
                           "baseline_value": {"type": "number"},
                           "hydra_value": {"type": "number"},
                           "percent": {"type": ["number", "null"]},
                           "higher_is_better": {"type": "boolean"},
                           "difference": _ESTIMATE}},
        "selection": {"type": ["object", "null"]},
        "precision_comparison": _comparison_schema(
            {"precision": {"enum": ["bf16", "fp32"]}, "other": {"enum": ["bf16", "fp32"]}}),
        "head_comparison": _comparison_schema(
            {"heads": {"type": "object"}, "other": {"type": "object"}, "tag": {"type": "string"},
             "bytes_per_user": {"type": "object", "additionalProperties": {
                 "type": "object", "additionalProperties": {"type": "integer"}}},
             "passes": _PASSES}, optional={"train_heldout": _comparison_schema({
                 "passes": _PASSES})}),
        "zero_fit": {"type": "object", "required": ["metric"],
                     "properties": {"metric": {"type": "string"},
                                    "baseline": {"enum": list(PROMPT_BASELINES)},
                                    "vs_baseline": _ESTIMATE, "vs_hydra": _ESTIMATE}},
        "run": {"type": "object"},
    },
}


def relative_improvement(methods: Mapping[str, Mapping[str, Estimate]], metric: str, *,
                         higher_is_better: bool,
                         difference: Estimate | None = None) -> dict[str, Any] | None:
    """HYDRA against the best prompt-only method on `metric`, in percent of that method's value;
    positive means HYDRA is better whichever way the metric points (MAE: lower is better).
    None when HYDRA or every prompt-only method is missing; percent None when the baseline is 0.
    `difference`: the paired bootstrap estimate of HYDRA's gain in metric units (same sign
    convention), included when given.
    """
    baselines = {m: methods[m][metric].mean for m in PROMPT_BASELINES if m in methods}
    if "hydra" not in methods or not baselines:
        return None
    pick = max if higher_is_better else min
    name = pick(baselines, key=lambda m: (baselines[m], -PROMPT_BASELINES.index(m)))
    base, hydra = baselines[name], methods["hydra"][metric].mean
    gain = (hydra - base) if higher_is_better else (base - hydra)
    out = {"metric": metric, "baseline": name, "baseline_value": base, "hydra_value": hydra,
           "percent": None if base == 0 else 100.0 * gain / abs(base),
           "higher_is_better": higher_is_better}
    if difference is not None:
        out["difference"] = difference.to_dict()
    return out


def build_result(*, dataset: str, task, generator: str, users: Mapping[str, int],
                 seeds: Sequence[int], methods: Mapping[str, Mapping[str, Estimate]],
                 difference: Estimate | None = None,
                 selection: Mapping[str, Any] | None = None,
                 precision_comparison: Mapping[str, Any] | None = None,
                 head_comparison: Mapping[str, Any] | None = None,
                 zero_fit: Mapping[str, Any] | None = None,
                 run: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The result document (see the module docstring), methods in the given order;
    `difference` as in `relative_improvement`; `selection` from `selection_diagnostics`;
    `precision_comparison` and `head_comparison` from `hydralm.evaluation.variants`;
    `zero_fit`: hydra_zero_fit's paired differences against the best prompt-only method
    (`baseline`, `vs_baseline`) and against hydra (`vs_hydra`), positive: zero-fit better."""
    return {
        "dataset": dataset, "task": task.name, "generator": generator,
        "users": {"train": int(users["train"]), "test": int(users["test"])},
        "seeds": [int(s) for s in seeds], "primary_metric": task.primary_metric,
        "methods": {m: {k: e.to_dict() for k, e in metrics.items()}
                    for m, metrics in methods.items()},
        "relative_improvement": relative_improvement(
            methods, task.primary_metric, higher_is_better=task.higher_is_better,
            difference=difference),
        "selection": _selection(selection),
        **({"precision_comparison": dict(precision_comparison)}
           if precision_comparison is not None else {}),
        **({"head_comparison": dict(head_comparison)} if head_comparison is not None else {}),
        **({"zero_fit": dict(zero_fit)} if zero_fit is not None else {}),
        **({"run": dict(run)} if run is not None else {}),
    }


def _selection(diagnostics: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The adapter's selection rate against a random pick (None without HYDRA candidates)."""
    if not diagnostics or not diagnostics.get("queries"):
        return None
    out = dict(diagnostics)
    out["margin_over_random"] = out["adapter_picks_best"] - out["random_picks_best"]
    return out


def _margin(selection: Mapping[str, Any]) -> str:
    """The selection margin over a random pick, with its interval where the result has one."""
    interval = selection.get("margin_interval")
    if interval is None:
        return f"{selection['margin_over_random']:+.3f}"
    return (f"{selection['margin_over_random']:+.3f} [{interval['ci_low']:+.3f}, "
            f"{interval['ci_high']:+.3f}]")


def _cell(estimate: Mapping[str, float], digits: int) -> str:
    return (f"{estimate['mean']:.{digits}f} [{estimate['ci_low']:.{digits}f}, "
            f"{estimate['ci_high']:.{digits}f}]")


def markdown_table(result: Mapping[str, Any]) -> str:
    """The result as Markdown: a heading line, one row per method, the relative improvement."""
    methods = result["methods"]
    metric_names = list(next(iter(methods.values())))
    primary = result["primary_metric"]
    users = result["users"]
    lines = [
        f"**{result['task']}** on `{result['dataset']}`, generator `{result['generator']}`, "
        f"{users['train']} training + {users['test']} test users, seeds "
        f"{', '.join(str(s) for s in result['seeds'])}; mean [95% bootstrap CI].",
        "",
        "| method | " + " | ".join(
            f"{m} (primary)" if m == primary else m for m in metric_names) + " |",
        "|---|" + "---|" * len(metric_names),
    ]
    for method, metrics in methods.items():
        digits = 2 if max(abs(e["mean"]) for e in metrics.values()) >= 10 else 3
        lines.append(f"| {method} | "
                     + " | ".join(_cell(metrics[m], digits) for m in metric_names) + " |")
    rel = result.get("relative_improvement")
    if rel is not None:
        percent = "n/a (baseline is 0)" if rel["percent"] is None else f"{rel['percent']:+.1f}%"
        lines += ["", f"Relative improvement of hydra over the best prompt-based method "
                      f"({rel['baseline']}) on {rel['metric']}: {percent}."]
        diff = rel.get("difference")
        if diff is not None:
            lines[-1] += (f" Paired difference (positive: hydra better): {diff['mean']:+.3f} "
                          f"[{diff['ci_low']:+.3f}, {diff['ci_high']:+.3f}].")
    sel = result.get("selection")
    if sel:
        lines += ["", f"Selection over {sel['queries']} queries: the adapter picks a best "
                      f"candidate {sel['adapter_picks_best']:.1%} of the time, a random pick "
                      f"{sel['random_picks_best']:.1%} (margin {_margin(sel)})."]
        if sel.get("hydra_picks_best") not in (None, sel["adapter_picks_best"]):
            lines[-1] += (f" HYDRA's answer, after the selection guard, is a best candidate "
                          f"{sel['hydra_picks_best']:.1%} of the time.")
        if sel.get("fallback_rate"):
            rates = ", ".join(f"{m} {r:.1%}" for m, r in sel["fallback_rate"].items())
            lines[-1] += f" The selection guard replaced the adapter's pick for {rates}."
        trained = sel.get("train_heldout_selection")
        if trained:
            lines[-1] += (f" On the training users' {trained['queries']} held-out queries: "
                          f"{trained['adapter_picks_best']:.1%} against "
                          f"{trained['random_picks_best']:.1%} (margin {_margin(trained)}).")
        by_seed = sel.get("guard_by_seed") or {}
        if by_seed:
            lines[-1] += " Guard per seed (rule at spread, chosen on training users): " + "; ".join(
                f"seed {seed}: " + ", ".join(f"{who} {g['rule']} at {g['min_spread']:g}"
                                            for who, g in guards.items()
                                            if g.get("min_spread") is not None)
                for seed, guards in by_seed.items()) + "."
        policy, held_out = sel.get("candidate_policy"), sel.get("train_heldout_hydra") or {}
        if policy:
            lines += ["", f"Candidate policy: {_describe_policy(policy)}."]
            if held_out.get("mean") is not None:
                lines[-1] += (f" HYDRA on the training users' {held_out['queries']} held-out "
                              f"queries (what compares policies): {held_out['mean']:.3f}.")
    if result.get("precision_comparison"):
        lines += ["", _precision_line(result["precision_comparison"])]
    if result.get("head_comparison"):
        lines += ["", _head_line(result["head_comparison"])]
    zero_fit = result.get("zero_fit") or {}
    cells = [f"against {name} {d['mean']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}]"
             for name, d in ((zero_fit.get("baseline"), zero_fit.get("vs_baseline")),
                             ("hydra (fitted heads)", zero_fit.get("vs_hydra"))) if d]
    if cells:
        lines += ["", f"Zero-fit heads (hydra_zero_fit) on {zero_fit['metric']}, paired "
                      f"difference (positive: zero-fit better): {'; '.join(cells)}."]
    return "\n".join(lines) + "\n"


def _describe_policy(policy: Mapping[str, Any]) -> str:
    """A candidate policy (CandidateSampling's fields) in words: where the N candidates come
    from."""
    n, fixed = policy["n"], policy.get("bare_greedy", False) + policy.get("greedy_first", False)
    bare = policy.get("bare_samples", 0)
    parts = (["the bare query's greedy answer"] * bool(policy.get("bare_greedy"))
             + ["the personalized prompt's greedy answer"] * bool(policy.get("greedy_first"))
             + [f"{n - fixed - bare} personalized-prompt samples"] * bool(n - fixed - bare)
             + [f"{bare} bare-query samples"] * bool(bare))
    return f"{n} candidates: " + ", ".join(parts) + f" (temperature {policy['temperature']:g})"


def _differences(cmp: Mapping[str, Any]) -> str:
    return ", ".join(f"{m} {d['mean']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}]"
                     for m, d in cmp["differences"].items())


def _shared(cmp: Mapping[str, Any]) -> str:
    return (f"Same HYDRA candidates in {cmp['same_candidates']} of {cmp['queries']} queries; "
            f"largest adapter-score difference on them {cmp['adapter_score_max_abs_diff']:.4f}.")


def _precision_line(cmp: Mapping[str, Any]) -> str:
    """The paired differences between the two precisions, in one sentence."""
    mine, other = cmp["precision"], cmp["other"]
    return (f"Precision: {mine} against {other} (rows *_{other}: the same bases, heads and "
            f"queries) on {cmp['metric']}, paired difference (positive: {mine} better): "
            f"{_differences(cmp)}. {_shared(cmp)}")


def _head_line(cmp: Mapping[str, Any]) -> str:
    """The paired differences between the configured heads and the other head form."""
    forms = {_describe(h) for h in cmp["heads"].values()}
    configured = (forms.pop() if len(forms) == 1 else
                  " / ".join(f"{kind} {_describe(h)}" for kind, h in cmp["heads"].items()))
    sizes = {which: ", ".join(f"{k} {b:,} B" for k, b in by_kind.items())
             for which, by_kind in cmp["bytes_per_user"].items()}
    return (f"Head form: {configured} against {_describe(cmp['other'])} (rows "
            f"*_{cmp['tag']}: the test users' heads fitted again in that form on the same bases "
            f"and labels) on {cmp['metric']}, paired difference (positive: "
            f"{'configured' if ' / ' in configured else configured} better): "
            f"{_differences(cmp)}. Head file per user: "
            f"{sizes.get('configured', '?')} against {sizes.get('other', '?')}. {_shared(cmp)}"
            + _passes(cmp) + _on_training(cmp.get("train_heldout")))


def _passes(cmp: Mapping[str, Any]) -> str:
    passing = [m for m, ok in (cmp.get("passes") or {}).items() if ok]
    return (f" The compact form passes the rule (interval reaching 0, mean at most "
            f"{FORM_RULE_TOLERANCE:g} worse) for: {', '.join(passing) or 'none'}.")


def _on_training(cmp: Mapping[str, Any] | None) -> str:
    """The same comparison on the training users' held-out queries (what chooses a form)."""
    if not cmp:
        return ""
    return (f" On the training users' {cmp['queries']} held-out queries (their heads fitted "
            f"from their own history in both forms; what chooses a form): {_differences(cmp)}."
            + _passes(cmp))


def _describe(head: Mapping[str, Any]) -> str:
    rank = f" r={head['rank']}" if head.get("form") != "dense" else ""
    return f"{head.get('form')}{rank} {head.get('dtype')}"
