"""Bootstrap confidence intervals over test queries, for results averaged over seeds.

A result is the mean over seeds of a metric computed on each seed's test queries. One bootstrap
replicate resamples every seed's queries with replacement (independently per seed) and averages the
per-seed metrics again; the interval is the replicates' percentile interval. The generator of
resample indices is seeded, and one seed's indices depend only on (seed, number of queries): every
method evaluated on the same queries is resampled identically, so their intervals are comparable
and `bootstrap_difference` gives the paired interval of the difference between two of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from hydralm.evaluation.scores import QueryScores

__all__ = ["Estimate", "bootstrap", "bootstrap_difference", "estimate_interval",
           "resample_indices"]


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


def _replicates(runs: Sequence[QueryScores], resamples: int,
                seed: int) -> dict[str, np.ndarray]:
    """Each metric's seed-averaged value on every replicate: float[resamples] per metric.
    Replicate r of run k uses row r of the index table of (seed + k, run size)."""
    if not runs:
        raise ValueError("bootstrap needs the scores of at least one seed, got none")
    tables = [resample_indices(run.size, resamples, seed + k) for k, run in enumerate(runs)]
    out: dict[str, np.ndarray] = {}
    for r in range(resamples):
        metrics = _average([run.metrics(table[r]) for run, table in zip(runs, tables,
                                                                        strict=True)])
        for name, value in metrics.items():
            out.setdefault(name, np.empty(resamples))[r] = value
    return out


def estimate_interval(mean: float, replicates: np.ndarray, confidence: float) -> Estimate:
    """The percentile interval, widened to contain `mean` where a skewed metric (corpus BLEU,
    macro-F1 on few queries) puts the point estimate outside it: an interval that excludes its
    own estimate would only confuse a reader."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(replicates, [tail, 100.0 - tail])
    return Estimate(mean=mean, ci_low=min(float(low), mean), ci_high=max(float(high), mean))


def bootstrap(runs: Sequence[QueryScores], *, resamples: int = 1000, confidence: float = 0.95,
              seed: int = 0) -> dict[str, Estimate]:
    """Each metric's mean over `runs` (one per seed) with a percentile bootstrap interval."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    replicates = _replicates(runs, resamples, seed)
    point = _average([run.metrics() for run in runs])
    return {name: estimate_interval(mean, replicates[name], confidence)
            for name, mean in point.items()}


def bootstrap_difference(runs_a: Sequence[QueryScores], runs_b: Sequence[QueryScores],
                         metric: str, *, resamples: int = 1000, confidence: float = 0.95,
                         seed: int = 0) -> Estimate:
    """mean(a) - mean(b) on `metric` with a paired interval: both are scored on the same
    resampled queries in every replicate (a and b must hold the same queries, seed by seed)."""
    sizes_a, sizes_b = [r.size for r in runs_a], [r.size for r in runs_b]
    if sizes_a != sizes_b:
        raise ValueError(f"paired runs need the same queries per seed, got sizes {sizes_a} "
                         f"and {sizes_b}")
    a = _replicates(runs_a, resamples, seed)[metric]
    b = _replicates(runs_b, resamples, seed)[metric]
    mean = (_average([r.metrics() for r in runs_a])[metric]
            - _average([r.metrics() for r in runs_b])[metric])
    return estimate_interval(mean, a - b, confidence)


def _average(per_seed: list[dict[str, float]]) -> dict[str, float]:
    return {name: float(np.mean([m[name] for m in per_seed])) for name in per_seed[0]}
