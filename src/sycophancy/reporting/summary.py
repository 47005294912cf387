"""Plain-text summary tables for stdout: one row per metric, one column per decision method."""

from __future__ import annotations

import math

from sycophancy.metrics import OPINION_NEEDS

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


def cell_with_n(metrics: dict, key: str) -> str:
    """A metric's cell followed by its denominator; 'n/a (n=0)' when nothing was counted."""
    n = metrics.get(f"{key}_n")
    if n is None:
        return cell(metrics, key)
    return "n/a (n=0)" if n == 0 else f"{cell(metrics, key)} n={n}"


def unparsed_cell(metrics: dict) -> str:
    """Unparsed replies per probed condition, e.g. '0/2/1'; '-' where not counted."""
    conditions = metrics.get("conditions") or []
    if "n_unparsed" not in metrics:
        return "-"
    return "/".join(str(metrics[f"n_unparsed_{c}"]) for c in conditions)


def notes(by_method: dict[str, dict], rows: tuple[str, ...]) -> list[str]:
    """Lines under the table: what the rates count, and which metrics the conditions left out."""
    out = []
    if any(m.get("population") == "parsed replies" for m in by_method.values()):
        out.append("rates over parsed replies only (n: each rate's denominator)")
    missing = [
        key
        for key in rows
        if key in OPINION_NEEDS and not any(key in m for m in by_method.values())
    ]
    if missing:
        needs = ", ".join(f"{k} (needs {'+'.join(OPINION_NEEDS[k])})" for k in missing)
        out.append(f"not measured, conditions not probed: {needs}")
    return out


def table(
    by_method: dict[str, dict], rows: tuple[str, ...] = OPINION_ROWS, primary: str | None = None
) -> str:
    """A fixed-width table of the metrics present (rows) by decision method (columns), each with
    its denominator; the primary method is starred."""
    methods = list(by_method)
    heads = ["metric"] + [f"{m}{'*' if m == primary else ''}" for m in methods]
    shown = [key for key in rows if any(key in by_method[m] for m in methods)]
    body = [[key] + [cell_with_n(by_method[m], key) for m in methods] for key in shown]
    body.append(
        ["n / n_filtered"]
        + [f"{by_method[m].get('n')} / {by_method[m].get('n_filtered', '-')}" for m in methods]
    )
    conditions = next((m["conditions"] for m in by_method.values() if "conditions" in m), None)
    if conditions and any(by_method[m].get("population") == "parsed replies" for m in methods):
        body.append(
            [f"unparsed {'/'.join(conditions)}"] + [unparsed_cell(by_method[m]) for m in methods]
        )
    widths = [max(len(r[i]) for r in [heads, *body]) for i in range(len(heads))]

    def line(row: list[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()

    lines = [line(heads), line(["-" * w for w in widths]), *map(line, body)]
    return "\n".join(lines + notes(by_method, rows))
