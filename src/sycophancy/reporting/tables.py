"""A probe's summary tables (probes.base.Table) as the fixed-width text a run prints."""

from __future__ import annotations

from sycophancy.probes.base import Table
from sycophancy.reporting.summary import cell, table


def render_tables(tables: list[Table | str]) -> str:
    """Each table rendered by its layout, notes as they are, separated by blank lines."""
    return "\n\n".join(
        text if isinstance(text, str) else LAYOUTS[text.layout](text) for text in tables
    )


def by_decision_method(t: Table) -> str:
    """Metrics by decision method, each with its denominator (reporting.summary.table)."""
    return table(t.columns, rows=t.rows, primary=t.primary)


def by_reading(t: Table) -> str:
    """Metrics by reading, each rate with its own n, closed by the counts of read answers."""
    heads = [t.title, *(f"{name}{'*' if name == t.primary else ''}" for name in t.columns)]
    body = [
        [key] + [f"{cell(col, key)} n={col.get(f'{key}_n')}" for col in t.columns.values()]
        for key in t.rows
        if any(key in col for col in t.columns.values())
    ]
    counts = ("n", "n_unparsed_first", "n_unparsed_final")
    if any(k in col for col in t.columns.values() for k in counts):  # not in a table of means
        body.append(
            ["n / unparsed first / final"]
            + [" / ".join(str(col.get(k)) for k in counts) for col in t.columns.values()]
        )
    widths = [max(len(row[c]) for row in [heads, *body]) for c in range(len(heads))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in [heads, *body]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


LAYOUTS = {"decision_methods": by_decision_method, "readings": by_reading}
