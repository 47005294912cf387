"""Plain-text summary tables for stdout: one row per metric, one column per decision method."""

from __future__ import annotations

import math

from sycophancy.metrics import OPINION_NEEDS
from sycophancy.metrics.table import is_signed, metric_names

OPINION_ROWS = metric_names("opinion", summary=True)


def _finite(x) -> bool:
    return isinstance(x, int | float) and not math.isnan(x)


def with_interval(value, low, high, signed: bool) -> str:
    """'0.612 [0.58, 0.64]', or '+0.125 [+0.00, +0.25]' when signed; the interval only where both
    ends are numbers; '-' for no value."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if not isinstance(value, int | float):
        return str(value)
    sign = "+" if signed else ""
    text = f"{value:{sign}.3f}"
    if _finite(low) and _finite(high):
        text += f" [{low:{sign}.2f}, {high:{sign}.2f}]"
    return text


def cell(metrics: dict, key: str, signed: bool | None = None) -> str:
    """A metric and its interval, signed where the metric table declares a difference (or where
    `signed` says so); '-' when absent."""
    low, high = metrics.get(f"{key}_ci") or (None, None)
    return with_interval(metrics.get(key), low, high, is_signed(key) if signed is None else signed)


def cell_with_n(metrics: dict, key: str, signed: bool | None = None) -> str:
    """A metric's cell followed by its denominator; 'n/a (n=0)' when nothing was counted."""
    n = metrics.get(f"{key}_n")
    if n is None:
        return cell(metrics, key, signed)
    return "n/a (n=0)" if n == 0 else f"{cell(metrics, key, signed)} n={n}"


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
    by_method: dict[str, dict],
    rows: tuple[str, ...] = OPINION_ROWS,
    primary: str | None = None,
    signed_columns: tuple[str, ...] = (),
) -> str:
    """A fixed-width table of the metrics present (rows) by decision method (columns), each with
    its denominator; the primary method is starred, and `signed_columns` (differences such as a
    before/after delta) show every value with its sign."""
    methods = list(by_method)
    heads = ["metric"] + [f"{m}{'*' if m == primary else ''}" for m in methods]
    shown = [key for key in rows if any(key in by_method[m] for m in methods)]
    signed = {m: True if m in signed_columns else None for m in methods}
    body = [[key] + [cell_with_n(by_method[m], key, signed[m]) for m in methods] for key in shown]
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
