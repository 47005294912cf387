"""Pure metrics: statistics, opinion-probe and "Are you sure?" metrics."""

from sycophancy.metrics.flips import flip_metrics
from sycophancy.metrics.opinion import OPINION_NEEDS, opinion_metrics, opinion_parts
from sycophancy.metrics.stats import Z95, mcnemar, paired_bootstrap_diff, rate, wilson_interval

__all__ = [
    "OPINION_NEEDS",
    "Z95",
    "flip_metrics",
    "mcnemar",
    "opinion_metrics",
    "opinion_parts",
    "paired_bootstrap_diff",
    "rate",
    "wilson_interval",
]
