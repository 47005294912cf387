"""Decisions from option scores: raw argmax, per-condition balanced thresholds, contextual calibration.

Small models carry a strong prior for one answer option that hides everything else. Every method
here works on one condition's items at a time and on option *strings* (columns), so a bias towards
"(A)" or towards "positive" is what gets removed, whatever order the choices were shown in.
"""

from __future__ import annotations

import numpy as np

METHODS = ("none", "balanced", "contextual")


def log_normalise(logp: np.ndarray) -> np.ndarray:
    """Log-softmax over the options (last axis), so scores compare across prompts."""
    top = logp.max(axis=-1, keepdims=True)
    return logp - top - np.log(np.exp(logp - top).sum(axis=-1, keepdims=True))


def balanced_offsets(scores: np.ndarray) -> np.ndarray:
    """Per-option offsets that make the argmax choose each option about equally often.

    Two options: the median score margin becomes the decision threshold (exactly balanced).
    More options: each option's mean normalised log-probability is subtracted.
    """
    norm = log_normalise(scores)
    if norm.shape[1] == 2:
        return np.array([-float(np.median(norm[:, 0] - norm[:, 1])), 0.0])
    return -norm.mean(axis=0)


def contextual_offsets(content_free_scores: np.ndarray) -> np.ndarray:
    """Zhao et al. (2021): minus the log of the mean option probabilities on content-free inputs."""
    probs = np.exp(log_normalise(content_free_scores)).mean(axis=0)
    return -np.log(probs)


def decide(
    scores: np.ndarray,
    method: str,
    content_free_scores: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Predicted column per row and the offsets used; scores are [n, k] in a fixed column order."""
    if method not in METHODS:
        raise ValueError(f"unknown calibration {method!r}; choose one of {METHODS}")
    k = scores.shape[1]
    if method == "none" or len(scores) == 0:
        offsets = np.zeros(k)
    elif method == "balanced":
        offsets = balanced_offsets(scores)
    else:
        if content_free_scores is None or len(content_free_scores) == 0:
            raise ValueError("contextual calibration needs content-free scores")
        offsets = contextual_offsets(content_free_scores)
    adjusted = log_normalise(scores) + offsets
    return adjusted.argmax(axis=1), offsets
