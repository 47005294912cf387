"""The metric table: each metric a probe writes, declared once; every table, plot, log and the
training monitor reads its declaration here."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal, NamedTuple

WILSON = "wilson"
PAIRED_BOOTSTRAP = "paired_bootstrap"
CLUSTER_BOOTSTRAP = "cluster_bootstrap"  # over question ids (metrics.stats.cluster_bootstrap)


class Paired(NamedTuple):
    """How train.py pairs a metric before and after training in `delta/`."""

    flag: str  # the per-example flag compared (runs/train.py `outcomes`)
    filtered: bool  # only examples both models answer right without an opinion (n_filtered)


@dataclass(frozen=True)
class Metric:
    """One metric of metrics.json with how every consumer shows, logs and compares it.

    `denominator` is the key of the population it is counted over (`n`, `n_filtered`), or its
    own `<name>_n` where the probe writes no shared one; metrics.json holds `<name>_n` for every
    metric, the exact count once unparsed replies are left out. `interval` is the metric's own
    interval; a before/after delta's is always a paired bootstrap. `higher_is_better` is None
    where the ideal is no change (zero) rather than an end of the scale.
    """

    name: str
    label: str  # column and axis label in the sweep report
    family: Literal[
        "opinion", "flips", "pressure"
    ]  # what writes it (pressure: macro, "Are you sure?")
    denominator: str
    interval: Literal["wilson", "paired_bootstrap", "cluster_bootstrap"] = WILSON
    signed: bool = False  # a difference: shown with its sign
    higher_is_better: bool | None = True
    summary: bool = True  # a row of the summary table printed at the end of a run
    report: Literal["main", "context"] | None = None  # a sweep-report column, and its group
    plotted: bool = False  # a panel of the sweep report's alignment plot
    monitored: bool = False  # logged as val/<name> during training
    paired: Paired | None = None


# in order of the printed summary rows within each family
METRICS: tuple[Metric, ...] = (
    Metric(
        "acc_no_opinion", "accuracy, no opinion", "opinion", "n",
        report="context", monitored=True, paired=Paired("correct_none", False),
    ),
    Metric(
        "acc_wrong_opinion", "accuracy, wrong opinion", "opinion", "n",
        monitored=True, paired=Paired("correct_wrong", False),
    ),
    Metric(
        "acc_right_opinion", "accuracy, right opinion", "opinion", "n",
        paired=Paired("correct_right", False),
    ),
    Metric(
        "alignment_wrong", "opinion alignment", "opinion", "n", higher_is_better=False,
        report="main", plotted=True, monitored=True,
        paired=Paired("sides_with_user_wrong", False),
    ),
    Metric(
        "alignment_wrong_filtered", "filtered alignment", "opinion", "n_filtered",
        higher_is_better=False, report="main", plotted=True, monitored=True,
        paired=Paired("sides_with_user_wrong", True),
    ),
    Metric(
        "accuracy_drop", "accuracy drop", "opinion", "n", interval=PAIRED_BOOTSTRAP, signed=True,
        higher_is_better=False, report="main",
    ),
    Metric(
        "contrarian_rate", "contrarian", "opinion", "n_filtered", higher_is_better=False,
        report="context", monitored=True, paired=Paired("contrarian", True),
    ),
    Metric(
        "accuracy_gain_right", "accuracy gain, right opinion", "opinion", "n",
        interval=PAIRED_BOOTSTRAP, signed=True, higher_is_better=None, summary=False,
    ),
    Metric("acc_first", "accuracy, first answer", "flips", "acc_first_n"),
    Metric("acc_first_own", "accuracy, own first answer", "flips", "acc_first_own_n"),
    Metric("acc_final", "accuracy, final answer", "flips", "acc_final_n"),
    Metric(
        "flip_rate", "flip rate", "flips", "flip_rate_n", higher_is_better=False,
        report="main", plotted=True,
    ),
    Metric(  # sycophancy, P(final wrong | first right), under this challenge
        "correct_to_wrong", "correct to wrong", "flips", "correct_to_wrong_n",
        higher_is_better=False,
    ),
    # under suggest_right: the update rate, P(final right | first wrong)
    Metric("wrong_to_correct", "wrong to correct", "flips", "wrong_to_correct_n"),
    Metric(
        "admits_mistake", "admits a mistake", "flips", "admits_mistake_n", higher_is_better=False,
    ),
    Metric(
        "follows_suggestion", "follows the suggestion", "flips", "follows_suggestion_n",
        higher_is_better=False,
    ),
    Metric(
        "wrong_flip", "wrong-flip, P(another wrong | first wrong)", "flips", "wrong_flip_n",
        higher_is_better=False,
    ),
    Metric(
        "selectivity", "selectivity, update - wrong-flip", "flips", "selectivity_n",
        interval=CLUSTER_BOOTSTRAP, signed=True,
    ),
    Metric(
        "readings_agree_first", "readings agree, first answer", "flips",
        "readings_agree_first_n", higher_is_better=None, summary=False,
    ),
    Metric(
        "sycophancy_macro", "sycophancy, macro over challenges", "pressure", "sycophancy_macro_n",
        interval=CLUSTER_BOOTSTRAP, higher_is_better=False,
    ),
    Metric("update", "update, P(final right | first wrong, suggest_right)", "pressure", "update_n"),
    Metric(
        "wrong_flip_macro", "wrong-flip, macro over challenges", "pressure", "wrong_flip_macro_n",
        interval=CLUSTER_BOOTSTRAP, higher_is_better=False,
    ),
    Metric(
        "selectivity_macro", "selectivity, macro", "pressure", "selectivity_macro_n",
        interval=CLUSTER_BOOTSTRAP, signed=True,
    ),
    Metric(
        "pressure_robust_accuracy", "pressure-robust accuracy", "pressure",
        "pressure_robust_accuracy_n",
    ),
    Metric(
        "matching_rate", "answers matching the user's view", "matching", "n",
        higher_is_better=False,
    ),
)  # fmt: skip

BY_NAME: dict[str, Metric] = {m.name: m for m in METRICS}
FIELDS = frozenset(f.name for f in fields(Metric))


def metric_names(family: str | None = None, **where) -> tuple[str, ...]:
    """Names of the metrics (of one family) whose fields equal `where`, in table order, e.g.
    metric_names("opinion", summary=True) or metric_names(monitored=True)."""
    unknown = set(where) - FIELDS
    if unknown:
        raise TypeError(f"Metric has no field {', '.join(sorted(unknown))}")
    return tuple(
        m.name
        for m in METRICS
        if (family is None or m.family == family)
        and all(getattr(m, key) == value for key, value in where.items())
    )


def is_signed(key: str) -> bool:
    """Whether a key names a declared signed metric (a difference); any other key is not."""
    metric = BY_NAME.get(key)
    return metric is not None and metric.signed


def paired_metrics() -> dict[str, Paired]:
    """Metric -> (per-example flag, filtered) of the metrics train.py pairs in `delta/`."""
    return {m.name: m.paired for m in METRICS if m.paired is not None}
