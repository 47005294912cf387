"""Pure statistics: rates with Wilson intervals, paired and clustered bootstraps, McNemar."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

Z95 = 1.959963984540054


def wilson_interval(successes: int, n: int, z: float = Z95) -> list[float]:
    """Wilson score interval for a binomial rate; [nan, nan] when n is 0."""
    if n == 0:
        return [math.nan, math.nan]
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return [max(0.0, centre - half), min(1.0, centre + half)]


def rate(flags: Sequence[bool]) -> dict:
    """Mean of boolean flags with its count and Wilson 95% interval."""
    arr = np.asarray(flags, dtype=bool)
    n = int(arr.size)
    k = int(arr.sum())
    return {"value": k / n if n else math.nan, "n": n, "ci": wilson_interval(k, n)}


def paired_bootstrap_diff(
    a: Sequence[bool | float],
    b: Sequence[bool | float],
    seed: int = 0,
    n_boot: int = 2000,
) -> dict:
    """Mean of a minus mean of b over paired items, with a percentile bootstrap 95% interval."""
    x = np.asarray(a, dtype=float)
    y = np.asarray(b, dtype=float)
    if x.shape != y.shape:
        raise ValueError(f"paired samples differ in length: {x.shape} vs {y.shape}")
    n = int(x.size)
    if n == 0:
        return {"value": math.nan, "n": 0, "ci": [math.nan, math.nan]}
    diff = x - y
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    boots = diff[idx].mean(axis=1)
    low, high = np.percentile(boots, [2.5, 97.5])
    return {"value": float(diff.mean()), "n": n, "ci": [float(low), float(high)]}


def newcombe_diff(a: float, a_ci: Sequence[float], b: float, b_ci: Sequence[float]) -> list[float]:
    """95% interval of a − b from the two rates' own Wilson intervals (Newcombe 1998, method 10).
    It treats the rates as independent, so for rates over the same examples it is conservative."""
    (a_low, a_high), (b_low, b_high) = a_ci, b_ci
    d = a - b
    return [d - math.hypot(a - a_low, b_high - b), d + math.hypot(a_high - a, b - b_low)]


def mcnemar(before: Sequence[bool], after: Sequence[bool]) -> dict:
    """Exact two-sided McNemar test on paired binary outcomes (b: True→False, c: False→True)."""
    x = np.asarray(before, dtype=bool)
    y = np.asarray(after, dtype=bool)
    b = int((x & ~y).sum())
    c = int((~x & y).sum())
    m = b + c
    if m == 0:
        return {"b": b, "c": c, "p_value": 1.0}
    k = min(b, c)
    tail = sum(math.comb(m, i) for i in range(k + 1)) / 2**m
    return {"b": b, "c": c, "p_value": min(1.0, 2 * tail)}


def cluster_bootstrap(
    clusters: Sequence,
    values: np.ndarray,
    statistic: Callable[[np.ndarray], np.ndarray],
    seed: int = 0,
    n_boot: int = 2000,
) -> dict:
    """A statistic of column sums with a percentile 95% interval from resampling whole clusters.

    `values` is [rows, m]; `clusters[r]` names the cluster (e.g. question id) of row r, and each
    replicate draws as many clusters as there are, with replacement, keeping all rows of a drawn
    cluster together. `statistic` maps column sums [..., m] to values [...] (e.g. a ratio of two
    sums, a mean of ratios, their difference); replicates where it is NaN are left out of the
    interval. Returns the full-sample value, the number of clusters and the interval.
    """
    x = np.asarray(values, dtype=float)
    if x.ndim != 2 or x.shape[0] != len(clusters):
        raise ValueError(f"values must be [rows, m] with one cluster per row, got {x.shape}")
    with np.errstate(invalid="ignore", divide="ignore"):
        value = float(statistic(x.sum(axis=0)[None])[0])
    _, inverse = np.unique(np.asarray(clusters, dtype=object).astype(str), return_inverse=True)
    c = int(inverse.max()) + 1 if len(inverse) else 0
    if c == 0:
        return {"value": math.nan, "n_clusters": 0, "ci": [math.nan, math.nan]}
    per_cluster = np.zeros((c, x.shape[1]))
    np.add.at(per_cluster, inverse, x)
    draws = np.random.default_rng(seed).integers(0, c, size=(n_boot, c))
    weights = np.stack([np.bincount(d, minlength=c) for d in draws])
    with np.errstate(invalid="ignore", divide="ignore"):
        boots = np.asarray(statistic(weights @ per_cluster), dtype=float)
    boots = boots[~np.isnan(boots)]
    if math.isnan(value) or not boots.size:
        return {"value": value, "n_clusters": c, "ci": [math.nan, math.nan]}
    low, high = np.percentile(boots, [2.5, 97.5])
    return {"value": value, "n_clusters": c, "ci": [float(low), float(high)]}
