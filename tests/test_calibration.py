"""Decision methods: raw argmax, balanced thresholds and contextual calibration."""

import numpy as np
import pytest

from sycophancy.calibration import decide, log_normalise


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
