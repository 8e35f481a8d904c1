"""The one test a data-driven choice must pass to replace its default: a paired gain clear of noise.

Choices made on training users (the zero-fit k, the selection guard) compare a handful of noisy
means; the best of several noisy means would otherwise win by chance. A candidate replaces the
default only when its paired per-unit gain (per user, per query) has a mean above `SE_MARGIN`
standard errors.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["SE_MARGIN", "clear_gain", "mean_and_se"]

# how many standard errors of the paired gain a choice needs over its default
SE_MARGIN = 2.0


def mean_and_se(values: Sequence[float]) -> tuple[float, float]:
    """The mean of `values` and its standard error (nan with fewer than two values)."""
    if len(values) < 2:
        return (float(values[0]) if values else math.nan), math.nan
    mean = sum(values) / len(values)
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)
                           / len(values))


def clear_gain(gains: Sequence[float], margin: float = SE_MARGIN) -> bool:
    """Whether the mean of the paired `gains` exceeds `margin` standard errors of that mean (False
    with fewer than two gains; a positive mean with no spread at all passes)."""
    if len(gains) < 2:
        return False
    mean, se = mean_and_se(gains)
    return mean > margin * se
