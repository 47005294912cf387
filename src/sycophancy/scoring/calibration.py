"""Decisions from option scores: raw argmax, frequency-matched offsets, contextual calibration.

Small models carry a strong prior for one answer option that hides everything else. Every method
here works on one condition's items at a time and on option *strings* (columns), so a bias towards
"(A)" or towards "positive" is what gets removed, whatever order the choices were shown in.

`balanced` adds one offset per column so that the argmax chooses each column exactly as often as a
target asks (equal shares, or the gold answers' shares). Any offsets that achieve those counts pick
the same rows: the assignment with the given counts that keeps the most total log-probability
(a transport problem; its dual prices are the offsets). We solve it exactly and return the offsets
that reproduce it with the widest margin. The counts then equal the target exactly, unless rows tie
at the cut (e.g. identical score rows split between two columns): tied rows get one decision, so a
count can miss its target by at most the number of rows tied at the cut.
"""

from __future__ import annotations

import numpy as np

from sycophancy.errors import UserError

METHODS = ("none", "balanced", "contextual")
TARGETS = ("gold", "uniform")  # what the balanced method matches decision shares to
NO_TRADE_MARGIN = 1.0  # nats; the margin used when no exchange of rows constrains the offsets


def log_normalise(logp: np.ndarray) -> np.ndarray:
    """Log-softmax over the options (last axis), so scores compare across prompts."""
    top = logp.max(axis=-1, keepdims=True)
    return logp - top - np.log(np.exp(logp - top).sum(axis=-1, keepdims=True))


def target_shares(gold_columns: list[int], k: int, target: str) -> np.ndarray:
    """Share of decisions each of k columns should get: as often as it is gold, or equally often."""
    if target not in TARGETS:
        raise UserError(
            f"probe.decision_target={target!r} is not known; choose gold (each option chosen as "
            "often as it is the right answer) or uniform (every option equally often)."
        )
    if target == "uniform" or not gold_columns:
        return np.full(k, 1.0 / k)
    return np.bincount(gold_columns, minlength=k) / len(gold_columns)


def target_counts(shares: np.ndarray, n: int) -> np.ndarray:
    """Whole decision counts summing to n nearest to n x shares (largest remainders, earlier first)."""
    shares = np.asarray(shares, dtype=np.float64)
    exact = np.round(n * shares / shares.sum(), 9)  # gold shares c/n give back c exactly
    counts = np.floor(exact).astype(int)
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[: n - counts.sum()]] += 1
    return counts


def move_losses(norm: np.ndarray, chosen: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """loss[j, l]: least score lost moving one row from column j to l (inf: no row); row[j, l]: it."""
    k = norm.shape[1]
    loss = np.full((k, k), np.inf)
    row = np.full((k, k), -1)
    for j in range(k):
        members = np.flatnonzero(chosen == j)
        if members.size:
            cost = norm[members, j][:, None] - norm[members]
            best = cost.argmin(axis=0)
            loss[j], row[j] = cost[best, np.arange(k)], members[best]
    np.fill_diagonal(loss, np.inf)
    return loss, row


def cheapest_chain(loss: np.ndarray, start: np.ndarray, end: np.ndarray) -> list[int]:
    """Columns along the cheapest chain of one-row moves from a start column to an end column."""
    k = len(loss)
    dist = np.where(start, 0.0, np.inf)
    prev = np.full(k, -1)
    for _ in range(k - 1):  # Bellman-Ford: no negative cycles while the assignment is optimal
        via = dist[:, None] + loss
        best = via.argmin(axis=0)
        shorter = via[best, np.arange(k)] < dist - 1e-12
        dist[shorter], prev[shorter] = via[best, np.arange(k)][shorter], best[shorter]
    node = int(np.flatnonzero(end)[np.argmin(dist[end])])
    chain = [node]
    while prev[node] >= 0 and len(chain) <= k:
        node = int(prev[node])
        chain.append(node)
    return chain[::-1]


def count_matched_assignment(norm: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The column per row, with `counts` rows per column, that keeps the most total score.

    Successive shortest paths from the raw argmax (optimal for its own counts): each step moves one
    row out of an over-full column along the cheapest chain of moves into an under-full one.
    """
    chosen = norm.argmax(axis=1)
    k = norm.shape[1]
    while True:
        surplus = np.bincount(chosen, minlength=k) - counts
        if not (surplus > 0).any():
            return chosen
        loss, row = move_losses(norm, chosen)
        chain = cheapest_chain(loss, surplus > 0, surplus < 0)
        moves = [(row[a, b], b) for a, b in zip(chain, chain[1:], strict=False)]
        for r, b in moves:
            chosen[r] = b


def max_cycle_mean(weights: np.ndarray) -> float:
    """The largest mean edge weight of any cycle (Karp's algorithm); -inf when there is no cycle."""
    k = len(weights)
    walks = np.full((k + 1, k), -np.inf)  # walks[m, v]: heaviest walk of m edges ending at v
    walks[0] = 0.0
    for m in range(1, k + 1):
        walks[m] = (walks[m - 1][:, None] + weights).max(axis=0)
    best = -np.inf
    for v in np.flatnonzero(np.isfinite(walks[k])):
        ratios = [
            (walks[k, v] - walks[m, v]) / (k - m) for m in range(k) if np.isfinite(walks[m, v])
        ]
        best = max(best, min(ratios))
    return float(best)


def widest_offsets(norm: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    """Offsets under which the argmax reproduces `chosen` with the widest possible margin.

    A row decided j stays j iff offset_j - offset_l >= gain[j, l] (its best gain from moving to l);
    the widest common margin is minus the largest mean gain around a cycle of columns.
    """
    k = norm.shape[1]
    gain = -move_losses(norm, chosen)[0]
    cycle = max_cycle_mean(gain)
    margin = NO_TRADE_MARGIN if cycle == -np.inf else max(-cycle, 0.0)
    weights = gain + margin
    price = np.zeros(k)
    for _ in range(k):  # longest paths: price_l >= price_j + weights[j, l]
        price = np.maximum(price, (price[:, None] + weights).max(axis=0))
    offsets = -price
    return offsets - offsets[-1]


def balanced_offsets(scores: np.ndarray, shares: np.ndarray | None = None) -> np.ndarray:
    """Per-option offsets that make the argmax choose each option as often as `shares` asks.

    `shares` defaults to equal shares. Two options: the threshold on the score margin sits halfway
    between the rows on either side of the target quantile (the median for equal shares).
    """
    norm = log_normalise(np.asarray(scores, dtype=np.float64))
    n, k = norm.shape
    shares = np.full(k, 1.0 / k) if shares is None else np.asarray(shares, dtype=np.float64)
    if len(shares) != k:
        raise ValueError(f"{len(shares)} target shares for {k} options")
    chosen = count_matched_assignment(norm, target_counts(shares, n))
    return widest_offsets(norm, chosen)


def contextual_offsets(content_free_scores: np.ndarray) -> np.ndarray:
    """Zhao et al. (2021): minus the log of the mean option probabilities on content-free inputs."""
    probs = np.exp(log_normalise(content_free_scores)).mean(axis=0)
    return -np.log(probs)


def decide(
    scores: np.ndarray,
    method: str,
    content_free_scores: np.ndarray | None = None,
    shares: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Predicted column per row and the offsets used; scores are [n, k] in a fixed column order.

    `shares` is the balanced method's target share per column (default: equal).
    """
    if method not in METHODS:
        raise ValueError(f"unknown calibration {method!r}; choose one of {METHODS}")
    k = scores.shape[1]
    if method == "none" or len(scores) == 0:
        offsets = np.zeros(k)
    elif method == "balanced":
        offsets = balanced_offsets(scores, shares)
    else:
        if content_free_scores is None or len(content_free_scores) == 0:
            raise ValueError("contextual calibration needs content-free scores")
        offsets = contextual_offsets(content_free_scores)
    adjusted = log_normalise(scores) + offsets
    return adjusted.argmax(axis=1), offsets
