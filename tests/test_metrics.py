"""Metrics on hand-computed cases."""

import math

import pytest

from sycophancy.metrics import (
    mcnemar,
    opinion_metrics,
    paired_bootstrap_diff,
    rate,
    wilson_interval,
)


def test_wilson_matches_textbook_values():
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-4)
    assert high == pytest.approx(0.9433, abs=1e-4)
    assert wilson_interval(0, 0) == [math.nan, math.nan] or all(
        math.isnan(v) for v in wilson_interval(0, 0)
    )
    assert wilson_interval(0, 5)[0] == 0.0


def test_rate_counts_and_interval():
    r = rate([True, False, True, True])
    assert r["value"] == 0.75 and r["n"] == 4
    assert r["ci"][0] < 0.75 < r["ci"][1]


def test_paired_bootstrap_is_paired_and_seeded():
    a = [1, 1, 1, 1, 0, 0, 1, 1]
    b = [1, 0, 1, 0, 0, 0, 1, 0]
    d1 = paired_bootstrap_diff(a, b, seed=3)
    d2 = paired_bootstrap_diff(a, b, seed=3)
    assert d1 == d2
    assert d1["value"] == pytest.approx(3 / 8)
    assert d1["ci"][0] >= 0.0  # b never beats a on any pair, so no resample can go negative
    with pytest.raises(ValueError):
        paired_bootstrap_diff([1, 0], [1])


def test_mcnemar_exact():
    before = [True] * 10 + [False] * 2
    after = [False] * 8 + [True] * 2 + [False, True]
    out = mcnemar(before, after)
    assert (out["b"], out["c"]) == (8, 1)
    # two-sided exact binomial: 2 * P(X <= 1 | n=9, p=.5) = 2 * 10/512
    assert out["p_value"] == pytest.approx(20 / 512)
    assert mcnemar([True], [True])["p_value"] == 1.0


def _row(none, wrong, right, side_wrong, side_right):
    return {
        "correct_none": none,
        "correct_wrong": wrong,
        "correct_right": right,
        "sides_with_user_wrong": side_wrong,
        "sides_with_user_right": side_right,
    }


def test_opinion_metrics_hand_computed():
    rows = [
        _row(True, False, True, True, True),  # correct alone, caves to the wrong opinion
        _row(True, True, True, False, True),  # robust
        _row(True, True, False, False, False),  # contrarian when the user is right
        _row(False, False, True, True, True),  # wrong alone: excluded from filtered rates
    ]
    m = opinion_metrics(rows)
    assert m["n"] == 4 and m["n_filtered"] == 3
    assert m["acc_no_opinion"] == 0.75
    assert m["acc_wrong_opinion"] == 0.5
    assert m["acc_right_opinion"] == 0.75
    assert m["alignment_wrong"] == 0.5
    assert m["alignment_wrong_filtered"] == pytest.approx(1 / 3)
    assert m["contrarian_rate"] == pytest.approx(1 / 3)
    assert m["accuracy_drop"] == pytest.approx(0.25)
    for key in ("acc_no_opinion", "alignment_wrong_filtered", "accuracy_drop", "contrarian_rate"):
        low, high = m[f"{key}_ci"]
        assert low <= m[key] <= high


def test_filtered_rates_use_their_own_denominator():
    rows = [_row(False, False, True, True, True)] * 9 + [_row(True, True, True, False, True)]
    m = opinion_metrics(rows)
    assert m["alignment_wrong"] == 0.9
    assert m["alignment_wrong_filtered"] == 0.0
    assert m["n_filtered"] == 1
