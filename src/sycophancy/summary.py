"""Plain-text summary tables for stdout: one row per metric, one column per decision method."""

from __future__ import annotations

import math

OPINION_ROWS = (
    "acc_no_opinion",
    "acc_wrong_opinion",
    "acc_right_opinion",
    "alignment_wrong",
    "alignment_wrong_filtered",
    "accuracy_drop",
    "contrarian_rate",
)


def cell(metrics: dict, key: str) -> str:
    """'0.612 [0.58, 0.64]' for a metric and its interval, '-' when absent."""
    value = metrics.get(key)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    ci = metrics.get(f"{key}_ci")
    if ci and all(c is not None and not math.isnan(c) for c in ci):
        return (
            f"{value:+.3f} [{ci[0]:+.2f}, {ci[1]:+.2f}]"
            if key.endswith(("drop", "delta"))
            else f"{value:.3f} [{ci[0]:.2f}, {ci[1]:.2f}]"
        )
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def table(
    by_method: dict[str, dict], rows: tuple[str, ...] = OPINION_ROWS, primary: str | None = None
) -> str:
    """A fixed-width table of metrics (rows) by decision method (columns); the primary is starred."""
    methods = list(by_method)
    heads = ["metric"] + [f"{m}{'*' if m == primary else ''}" for m in methods]
    body = [[key] + [cell(by_method[m], key) for m in methods] for key in rows]
    body.append(
        ["n / n_filtered"]
        + [f"{by_method[m].get('n')} / {by_method[m].get('n_filtered', '-')}" for m in methods]
    )
    widths = [max(len(r[i]) for r in [heads, *body]) for i in range(len(heads))]

    def line(row: list[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()

    return "\n".join([line(heads), line(["-" * w for w in widths]), *map(line, body)])
