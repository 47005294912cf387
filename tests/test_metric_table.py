"""The metric table against what the probes write and what every consumer shows, logs or pairs."""

import pytest

from sycophancy.metrics import OPINION_NEEDS, flip_metrics, opinion_metrics, wilson_interval
from sycophancy.metrics.table import (
    BY_NAME,
    CLUSTER_BOOTSTRAP,
    METRICS,
    PAIRED_BOOTSTRAP,
    WILSON,
    is_signed,
    metric_names,
    paired_metrics,
)
from sycophancy.records import MCQuestion
from sycophancy.reporting import report, summary

BOOKKEEPING = {"n", "n_filtered", "conditions"}  # and n_unparsed*


def opinion_output() -> dict:
    """opinion_metrics of every condition on four examples that differ in every flag."""
    flags = [
        (True, False, True, True, True),
        (True, True, True, False, True),
        (True, True, False, False, False),
        (False, False, True, True, True),
    ]
    keys = ("correct_none", "correct_wrong", "correct_right")
    sides = ("sides_with_user_wrong", "sides_with_user_right")
    rows = [
        {
            **{f"parsed_{c}": True for c in ("none", "wrong", "right")},
            **dict(zip(keys + sides, row, strict=True)),
        }
        for row in flags
    ]
    return opinion_metrics(rows, seed=0)


def flips_output() -> dict:
    """The per-challenge metrics of the "Are you sure?" probe (flip_metrics per reading, each
    reading's own first answers, their agreement) on five questions."""
    from sycophancy.probes.are_you_sure import challenge_metrics

    questions = [MCQuestion(str(i), "q", ("a", "b", "c"), i % 3) for i in range(5)]
    first = {"scored": [0, 1, 0, 0, 1], "generated": [0, None, 2, 0, 1]}
    final = {"scored": [0, 2, 2, 1, 0], "generated": [1, 1, None, 0, 1]}
    dialogue = {
        "index": list(range(5)),
        "challenge": ["suggest_wrong"] * 5,
        "shown": first["scored"],
        "admits": [False, True, False, True, False],
        "suggested": [1, 2, 0, 1, 2],
    }
    out = challenge_metrics(questions, first, final, dialogue, "suggest_wrong")
    return {**out, **out["scored"], **pressure_by_challenge()}


def pressure_run() -> dict:
    """pressure_metrics of two questions with three options under every challenge kind."""
    from sycophancy.metrics.pressure import pressure_metrics

    kinds = ["plain", "authority", "suggest_wrong", "suggest_right"]
    return pressure_metrics(
        ["a", "b"] * 4, [k for k in kinds for _ in range(2)], [0, 1] * 4,
        [1, 2, 0, 0, 0, 1, 0, 0], [0, 0] * 4, [3] * 8, n_boot=100,
    )  # fmt: skip


def pressure_by_challenge() -> dict:
    """The per-challenge pressure metrics the probe adds to each challenge's readings."""
    by = pressure_run()["by_challenge"]
    return {**by["suggest_wrong"], **by["suggest_right"]}


def pressure_output() -> dict:
    """The macro pressure metrics (metrics.json `pressure`)."""
    return {k: v for k, v in pressure_run().items() if k != "by_challenge"}


def matching_output() -> dict:
    """The Perez et al. A/B probe's metrics on three questions, two answered the user's way."""
    from sycophancy.probes.ab import matching_metrics
    from sycophancy.records import ABQuestion

    questions = [ABQuestion(str(i), "q", ("A", "B"), (i % 2,)) for i in range(3)]
    return matching_metrics(questions, [0, 1, 1])


def metric_keys(output: dict) -> set[str]:
    """Numeric keys of an output that are metrics: neither bookkeeping counts nor a metric's `_n`."""
    numbers = {k for k, v in output.items() if isinstance(v, int | float)}
    return {
        k
        for k in numbers
        if k not in BOOKKEEPING
        and not k.startswith("n_unparsed")
        and not (k.endswith("_n") and k.removesuffix("_n") in numbers)
    }


def test_every_metric_the_opinion_probes_write_is_declared():
    out = opinion_output()
    assert metric_keys(out) == set(metric_names("opinion"))
    assert set(OPINION_NEEDS) == set(metric_names("opinion"))


def test_every_metric_the_are_you_sure_probe_writes_is_declared():
    out = flips_output()
    assert metric_keys(out) == set(metric_names("flips"))
    assert set(metric_keys(flip_metrics([0], [1], [0], [True], [1]))) <= set(metric_names("flips"))


def test_every_metric_the_perez_probe_writes_is_declared():
    assert metric_keys(matching_output()) == set(metric_names("matching"))
    assert matching_output()["matching_rate"] == 2 / 3


def test_every_macro_pressure_metric_is_declared():
    assert metric_keys(pressure_output()) == set(metric_names("pressure"))


@pytest.mark.parametrize("output", [opinion_output, flips_output, pressure_output, matching_output])
def test_every_declared_metric_has_its_denominator_count_and_interval(output):
    out = output()
    for name in metric_keys(out):
        metric = BY_NAME[name]
        assert isinstance(out[metric.denominator], int), name
        assert out[f"{name}_n"] <= out[metric.denominator], name
        assert len(out[f"{name}_ci"]) == 2, name


@pytest.mark.parametrize("output", [opinion_output, flips_output, pressure_output, matching_output])
def test_interval_kinds_are_the_intervals_computed(output):
    out = output()
    for name in metric_keys(out):
        metric, n = BY_NAME[name], out[f"{name}_n"]
        if metric.signed:  # a difference of two rates: bootstrapped, never Wilson
            assert metric.interval != WILSON, name
            continue
        wilson = wilson_interval(round(out[name] * n), n)
        if metric.interval == CLUSTER_BOOTSTRAP:  # over question ids: its own interval
            assert out[f"{name}_ci"] != wilson, name
        else:
            assert (out[f"{name}_ci"] == wilson) == (metric.interval == WILSON), name
        # a paired bootstrap is over a difference of two rates, so the value carries a sign
        assert (metric.interval == PAIRED_BOOTSTRAP) <= metric.signed, name


def test_summary_rows_are_the_table_selection():
    from sycophancy.probes import are_you_sure

    assert summary.OPINION_ROWS == metric_names("opinion", summary=True)
    assert are_you_sure.ROWS == metric_names("flips", summary=True)


def test_report_columns_labels_and_plots_are_the_table_selection():
    assert report.METRICS == (
        "alignment_wrong",
        "alignment_wrong_filtered",
        "accuracy_drop",
        "flip_rate",
        "acc_no_opinion",
        "contrarian_rate",
    )  # the headline metrics, then context for reading them
    assert report.PLOTTED == metric_names(plotted=True)
    assert set(report.PLOTTED) <= set(report.METRICS)


def test_training_monitor_and_paired_deltas_read_the_table():
    from sycophancy.runs import train
    from sycophancy.training import module

    assert module.MONITORED == metric_names(monitored=True)
    assert train.PAIRED == paired_metrics()
    for name, (_, filtered) in train.PAIRED.items():
        assert BY_NAME[name].family == "opinion"
        assert filtered == (BY_NAME[name].denominator == "n_filtered"), name


def test_paired_deltas_write_every_paired_metric_with_its_flag():
    from sycophancy.runs.train import outcomes, paired_deltas

    records = [
        {
            "example_id": str(i),
            "condition": c,
            "gold": 0,
            "user_option": {"none": None, "wrong": 1, "right": 0}[c],
            "prediction": {"m": (i + j) % 2},
        }
        for i in range(4)
        for j, c in enumerate(("none", "wrong", "right"))
    ]
    flags = set().union(*outcomes(records, "m").values())
    assert {p.flag for p in paired_metrics().values()} <= flags
    delta = paired_deltas(records, records, "m", seed=0)
    assert metric_keys(delta) == set(paired_metrics())


def test_selecting_by_an_unknown_field_is_refused():
    with pytest.raises(TypeError, match="no field plotted_"):
        metric_names(plotted_=True)


@pytest.mark.parametrize("name", [m.name for m in METRICS])
@pytest.mark.parametrize("ci", [[0.0, 0.5], None, [float("nan"), float("nan")]])
def test_summary_and_report_format_every_metric_alike(name, ci):
    metrics = {name: 0.25, f"{name}_ci": ci}
    row = {name: 0.25, f"{name}_low": (ci or [None])[0], f"{name}_high": (ci or [None, None])[1]}
    printed = summary.cell(metrics, name)
    assert printed == report.fmt(row, name)
    assert printed.startswith("+0.250" if BY_NAME[name].signed else "0.250")
    if ci == [0.0, 0.5]:
        assert printed.endswith("[+0.00, +0.50]" if BY_NAME[name].signed else "[0.00, 0.50]")


def test_a_signed_column_shows_every_sign_and_other_keys_none():
    delta = {"n": 4, "alignment_wrong": 0.25, "alignment_wrong_ci": [0.0, 0.5]}
    text = summary.table({"delta": delta}, rows=("alignment_wrong",), signed_columns=("delta",))
    assert "+0.250 [+0.00, +0.50]" in text
    assert "0.250 [0.00, 0.50]" in summary.table({"delta": delta}, rows=("alignment_wrong",))
    assert not is_signed("alignment_wrong (Δ over n=3 both right alone)")
