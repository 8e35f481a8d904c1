"""Bootstrap confidence intervals over test queries, for results averaged over seeds.

A result is the mean over seeds of a metric computed on each seed's test queries. One bootstrap
replicate resamples every seed's queries with replacement (independently per seed) and averages the
per-seed metrics again; the interval is the replicates' percentile interval. The generator of
resample indices is seeded, and one seed's indices depend only on (seed, number of queries): every
method evaluated on the same queries is resampled identically, so their intervals are comparable.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from hydralm.evaluation.scores import QueryScores

__all__ = ["Estimate", "bootstrap", "resample_indices"]


@dataclass(frozen=True)
class Estimate:
    """A point estimate and its confidence interval."""

    mean: float
    ci_low: float
    ci_high: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def resample_indices(size: int, resamples: int, seed: int) -> np.ndarray:
    """int64[resamples, size]: query indices drawn with replacement, reproducible by seed."""
    if size < 1:
        raise ValueError(f"need at least one query to resample, got {size!r}")
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples!r}")
    return np.random.default_rng([seed, size]).integers(0, size, size=(resamples, size))


def bootstrap(runs: Sequence[QueryScores], *, resamples: int = 1000, confidence: float = 0.95,
              seed: int = 0) -> dict[str, Estimate]:
    """Each metric's mean over `runs` (one per seed) with a percentile bootstrap interval.

    The interval is widened to contain the mean where a skewed metric (corpus BLEU, macro-F1 on
    few queries) puts the point estimate outside the replicates' percentiles: an interval that
    excludes its own estimate would only confuse a reader.
    """
    if not runs:
        raise ValueError("bootstrap needs the scores of at least one seed, got none")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    point = _average([run.metrics() for run in runs])
    # Replicate r of every run uses row (seed_offset + k) of that run's index table.
    tables = [resample_indices(run.size, resamples, seed + k) for k, run in enumerate(runs)]
    replicates = {name: np.empty(resamples) for name in point}
    for r in range(resamples):
        metrics = _average([run.metrics(table[r]) for run, table in zip(runs, tables,
                                                                        strict=True)])
        for name, value in metrics.items():
            replicates[name][r] = value
    tail = (1.0 - confidence) / 2.0 * 100.0
    out = {}
    for name, mean in point.items():
        low, high = np.percentile(replicates[name], [tail, 100.0 - tail])
        out[name] = Estimate(mean=mean, ci_low=min(float(low), mean),
                             ci_high=max(float(high), mean))
    return out


def _average(per_seed: list[dict[str, float]]) -> dict[str, float]:
    return {name: float(np.mean([m[name] for m in per_seed])) for name in per_seed[0]}
