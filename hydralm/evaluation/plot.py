"""The quality result as a bar chart of the primary metric with 95% CI error bars (PNG).

matplotlib (Agg, no display) is imported only here and only when a chart is drawn: it is an
optional dependency of evaluation, not of the library.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hydralm.errors import ConfigError

__all__ = ["plot_result"]

log = logging.getLogger(__name__)

_METHOD_COLOUR = "#4C72B0"
_HYDRA_COLOUR = "#C44E52"
_REFERENCE_COLOUR = "#B0B0B0"


def _colour(method: str) -> str:
    if method == "history_knn" or method.startswith("oracle_"):
        return _REFERENCE_COLOUR
    return _HYDRA_COLOUR if method.startswith("hydra") else _METHOD_COLOUR


def plot_result(result: Mapping[str, Any], path: str | Path) -> Path:
    """Draw every method's primary metric with its interval to `path` (PNG); returns the path.
    Reference rows (history_knn, the oracle) are grey, HYDRA's rows red."""
    try:
        import matplotlib
    except ImportError as exc:
        raise ConfigError("the bar chart needs matplotlib (pip install matplotlib), which is "
                          "not installed") from exc
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    metric = result["primary_metric"]
    names = list(result["methods"])
    estimates = [result["methods"][m][metric] for m in names]
    means = [e["mean"] for e in estimates]
    errors = [[e["mean"] - e["ci_low"] for e in estimates],
              [e["ci_high"] - e["mean"] for e in estimates]]
    fig, ax = plt.subplots(figsize=(1.1 * len(names) + 2.0, 4.2), dpi=110)
    try:
        ax.bar(range(len(names)), means, yerr=errors, capsize=4,
               color=[_colour(m) for m in names], edgecolor="black", linewidth=0.6)
        ax.set_xticks(range(len(names)), [f"{n}\n{m:.3g}" for n, m in zip(names, means,
                                                                            strict=True)],
                      rotation=30, ha="right", fontsize=8)
        ax.set_ylabel(f"{metric} (mean, 95% CI)")
        ax.set_title(f"{result['task']} on {result['dataset']} - {result['generator']}",
                     fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, format="png")
    finally:
        plt.close(fig)
    log.info("wrote %s", out)
    return out
