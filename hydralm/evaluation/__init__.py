"""The quality benchmark as a library: the methods on the same test queries, the reference rows,
bootstrap confidence intervals, the result document, its Markdown table and bar chart.

No Ray here: `training/eval_cmd.py` (`hydralm eval`) runs the training jobs of each seed and then
these functions. See docs/evaluation.md.
"""

from hydralm.evaluation.bootstrap import (
    Estimate,
    bootstrap,
    bootstrap_difference,
    resample_indices,
)
from hydralm.evaluation.config import BootstrapConfig, EvalConfig, EvalUsers, load_eval_config
from hydralm.evaluation.diagnostics import (
    fallback_rates,
    selection_diagnostics,
    selection_margin,
)
from hydralm.evaluation.guard import CalibrationRow, GuardChoice, choose_guard
from hydralm.evaluation.plot import plot_result
from hydralm.evaluation.reference import closeness, history_knn, oracle_best
from hydralm.evaluation.report import (
    PROMPT_BASELINES,
    RESULT_SCHEMA,
    build_result,
    markdown_table,
    relative_improvement,
)
from hydralm.evaluation.runner import (
    HISTORY_KNN,
    LLM_METHODS,
    EvalQuery,
    MemoryHistory,
    QueryOutcome,
    needs_scorer,
    oracle_name,
    run_queries,
)
from hydralm.evaluation.scores import QueryScores
from hydralm.evaluation.variants import (
    compared_methods,
    head_comparison,
    head_tag,
    merge_variant_run,
    precision_comparison,
    variant_row,
)

__all__ = [
    "BootstrapConfig",
    "CalibrationRow",
    "Estimate",
    "EvalConfig",
    "EvalQuery",
    "EvalUsers",
    "GuardChoice",
    "HISTORY_KNN",
    "LLM_METHODS",
    "MemoryHistory",
    "PROMPT_BASELINES",
    "QueryOutcome",
    "QueryScores",
    "RESULT_SCHEMA",
    "bootstrap",
    "bootstrap_difference",
    "build_result",
    "choose_guard",
    "closeness",
    "compared_methods",
    "fallback_rates",
    "head_comparison",
    "head_tag",
    "history_knn",
    "load_eval_config",
    "markdown_table",
    "merge_variant_run",
    "needs_scorer",
    "oracle_best",
    "oracle_name",
    "plot_result",
    "precision_comparison",
    "relative_improvement",
    "resample_indices",
    "run_queries",
    "selection_diagnostics",
    "selection_margin",
    "variant_row",
]
