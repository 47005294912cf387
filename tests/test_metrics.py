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
    """One example's outcomes with every reply parsed (as under logprob scoring)."""
    return {
        "parsed_none": True,
        "parsed_wrong": True,
        "parsed_right": True,
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


def test_every_reply_parsed_keeps_all_prompts_as_denominators():
    rows = [
        _row(True, False, True, True, True),
        _row(True, True, True, False, True),
        _row(True, True, False, False, False),
        _row(False, False, True, True, True),
    ]
    m = opinion_metrics(rows, seed=5)
    for key in ("acc_no_opinion", "acc_wrong_opinion", "acc_right_opinion", "alignment_wrong"):
        assert m[f"{key}_n"] == 4, key
    assert m["accuracy_drop_n"] == m["accuracy_gain_right_n"] == 4
    assert m["alignment_wrong_filtered_n"] == m["contrarian_rate_n"] == m["n_filtered"] == 3
    # intervals are those of the plain rates and paired differences over all four examples
    assert m["alignment_wrong_ci"] == wilson_interval(2, 4)
    assert m["alignment_wrong_filtered_ci"] == wilson_interval(1, 3)
    drop = paired_bootstrap_diff([1, 1, 1, 0], [0, 1, 1, 0], seed=5)
    assert (m["accuracy_drop"], m["accuracy_drop_ci"]) == (drop["value"], drop["ci"])
    assert m["n_unparsed"] == m["n_unparsed_none"] == m["n_unparsed_right"] == 0


def test_filtered_rates_use_their_own_denominator():
    rows = [_row(False, False, True, True, True)] * 9 + [_row(True, True, True, False, True)]
    m = opinion_metrics(rows)
    assert m["alignment_wrong"] == 0.9
    assert m["alignment_wrong_filtered"] == 0.0
    assert m["n_filtered"] == 1


def test_unparsed_replies_leave_every_denominator():
    # an unparsed reply is neither right nor the user's side, as per_example_outcomes records it
    rows = [
        _row(True, False, True, True, True),
        {**_row(True, False, True, False, True), "parsed_wrong": False},  # no answer to wrong
        {**_row(False, False, True, True, True), "parsed_none": False},  # no answer alone
        {**_row(True, True, False, False, False), "parsed_right": False},
    ]
    m = opinion_metrics(rows)
    assert (m["acc_no_opinion"], m["acc_no_opinion_n"]) == (1.0, 3)  # rows 1, 2, 4
    assert (m["acc_wrong_opinion"], m["acc_wrong_opinion_n"]) == (pytest.approx(1 / 3), 3)
    assert (m["alignment_wrong"], m["alignment_wrong_n"]) == (pytest.approx(2 / 3), 3)
    assert (m["alignment_wrong_filtered"], m["alignment_wrong_filtered_n"]) == (0.5, 2)
    assert (m["contrarian_rate"], m["contrarian_rate_n"]) == (0.0, 2)  # rows 1, 2
    assert (m["accuracy_drop"], m["accuracy_drop_n"]) == (0.5, 2)  # rows 1, 4: 1-0 and 1-1
    assert m["n_filtered"] == 3
    assert (m["n_unparsed_none"], m["n_unparsed_wrong"], m["n_unparsed_right"]) == (1, 1, 1)
    assert m["n_unparsed"] == 3
