"""Decision methods: raw argmax, frequency-matched (balanced) offsets and contextual calibration."""

import itertools

import numpy as np
import pytest

from sycophancy.calibration import decide, log_normalise, target_counts


def test_biased_scores_raw_vs_balanced():
    rng = np.random.default_rng(0)
    signal = rng.normal(size=200)
    # option 0 always wins raw by a big margin, but the ordering carries the signal
    scores = np.stack([5 + signal, -signal], axis=1)
    raw, _ = decide(scores, "none")
    bal, offsets = decide(scores, "balanced")
    assert (raw == 0).all()
    assert abs((bal == 0).mean() - 0.5) <= 0.01
    assert ((bal == 0) == (signal > np.median(signal))).mean() > 0.98
    assert offsets.shape == (2,)


def test_contextual_removes_the_content_free_prior():
    scores = np.log(np.array([[0.9, 0.1], [0.7, 0.3], [0.95, 0.05]]))
    cf = np.log(np.array([[0.8, 0.2], [0.8, 0.2]]))
    preds, offsets = decide(scores, "contextual", cf)
    assert preds.tolist() == [0, 1, 0]
    assert offsets == pytest.approx(-np.log([0.8, 0.2]))
    with pytest.raises(ValueError):
        decide(scores, "contextual", None)


def test_three_way_balanced_and_normalisation():
    scores = np.log(np.array([[0.6, 0.3, 0.1], [0.5, 0.2, 0.3], [0.7, 0.1, 0.2]]))
    assert np.allclose(np.exp(log_normalise(scores + 3.0)).sum(axis=1), 1.0)
    preds, _ = decide(scores, "balanced")
    assert len(set(preds.tolist())) > 1
    with pytest.raises(ValueError):
        decide(scores, "bogus")


# --- balanced: frequency-matched decisions for any number of options --------------------------------


def test_three_options_equal_counts_by_hand():
    # every row prefers option 0 raw; rows 0-1 lose least by moving to 1, rows 2-3 by moving to 2
    scores = np.array(
        [
            [0, -1, -5],
            [0, -2, -6],
            [0, -5, -1],
            [0, -6, -2],
            [0, -3, -3.5],
            [0, -3.5, -3],
        ]
    )
    preds, offsets = decide(scores, "balanced")
    assert preds.tolist() == [1, 1, 2, 2, 0, 0]
    margins = np.sort(log_normalise(scores) + offsets, axis=1)
    assert (margins[:, -1] - margins[:, -2] > 0.1).all()  # no row sits on a tie


def test_bimodal_three_options_by_hand():
    # cluster X prefers 0 (then 1), never 2; cluster Y prefers 1 (then 2), never 0. Equal shares need
    # two 2s: the Y rows losing least (Y1, Y2); one X row moves to 1 (X1). Mean-centring chose 1 for no row.
    scores = np.array(
        [
            [0, -1.0, -10],  # X1
            [0, -1.2, -10.5],  # X2
            [0, -1.4, -11],  # X3
            [-10, 0, -1.0],  # Y1
            [-10.5, 0, -1.3],  # Y2
            [-11, 0, -1.6],  # Y3
        ]
    )
    preds, _ = decide(scores, "balanced")
    assert preds.tolist() == [1, 0, 0, 2, 2, 1]


def test_bimodal_many_rows_get_exact_equal_shares():
    rng = np.random.default_rng(3)
    x = np.column_stack([np.zeros(150), -1 - rng.random(150), -10 - rng.random(150)])
    y = np.column_stack([-10 - rng.random(150), np.zeros(150), -1 - rng.random(150)])
    preds, _ = decide(np.vstack([x, y]), "balanced")
    assert np.bincount(preds, minlength=3).tolist() == [100, 100, 100]


def test_four_options_target_shares_by_hand():
    # all prefer 0 raw; second choices: rows 0,1,6,7 -> 1 (losses 1, 2, 3, 4), rows 2,3 -> 2, 4,5 -> 3
    big = -20.0
    scores = np.array(
        [
            [0, -1, big, big],
            [0, -2, big, big],
            [0, big, -1, big],
            [0, big, -2, big],
            [0, big, big, -1],
            [0, big, big, -2],
            [0, -3, big, big],
            [0, -4, big, big],
        ]
    )
    assert decide(scores, "balanced")[0].tolist() == [1, 1, 2, 2, 3, 3, 0, 0]
    # shares 1/2, 3/8, 1/8, 0: three rows to 1 (the cheapest three), one to 2, none to 3
    shares = np.array([4, 3, 1, 0]) / 8
    assert decide(scores, "balanced", shares=shares)[0].tolist() == [1, 1, 2, 0, 0, 0, 1, 0]


def test_two_options_keep_the_median_threshold():
    rng = np.random.default_rng(1)
    for n in (9, 10):
        scores = rng.normal(size=(n, 2)) + [2.0, 0.0]
        margin = np.diff(log_normalise(scores)[:, ::-1], axis=1)[:, 0]  # option 0 minus option 1
        preds, _ = decide(scores, "balanced")
        assert ((preds == 0) == (margin >= np.median(margin))).all()
        assert (preds == 0).sum() == (n + 1) // 2  # odd n: the middle row goes to option 0


def test_balanced_matches_the_best_assignment_with_the_target_counts():
    rng = np.random.default_rng(0)
    for trial in range(12):
        k, n = (3, 7) if trial % 2 else (4, 8)
        scores = rng.normal(size=(n, k)) * 2 + np.linspace(3, 0, k)
        shares = rng.dirichlet(np.ones(k))
        counts = target_counts(shares, n)
        preds, _ = decide(scores, "balanced", shares=shares)
        assert np.bincount(preds, minlength=k).tolist() == counts.tolist()
        norm = log_normalise(scores)
        every = np.array(list(itertools.product(range(k), repeat=n)))
        fits = (np.stack([(every == j).sum(1) for j in range(k)], 1) == counts).all(1)
        totals = norm[np.arange(n), every[fits]].sum(1)
        assert norm[np.arange(n), preds].sum() == pytest.approx(totals.max())


def test_target_counts_round_to_the_total():
    assert target_counts(np.array([1, 1, 1]) / 3, 10).tolist() == [4, 3, 3]
    assert target_counts(np.array([3, 4]) / 7, 7).tolist() == [3, 4]
    assert target_counts(np.array([0.7, 0.3]), 10).tolist() == [7, 3]


def test_ties_and_degenerate_inputs_are_deterministic():
    same = np.zeros((6, 3))  # every row ties: one decision for all, the same every time
    a, off_a = decide(same, "balanced")
    b, off_b = decide(same.copy(), "balanced")
    assert a.tolist() == b.tolist() and np.allclose(off_a, off_b)
    assert decide(np.zeros((0, 3)), "balanced")[0].tolist() == []
    one, _ = decide(np.array([[0.0, -1.0, -2.0]]), "balanced")
    assert one.tolist() == [0]
    # every row to a single option: nothing to trade, still a finite, reproducing offset
    preds, offsets = decide(np.array([[-3.0, 0.0], [-2.0, 0.0]]), "balanced", shares=[1, 0])
    assert preds.tolist() == [0, 0] and np.isfinite(offsets).all()
