"""Labels and text: label names, raw label values to ids, columns rendered into example text."""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence
from typing import Any

from sycophancy.errors import UserError
from sycophancy.records import Example
from sycophancy.sources.common import Table, _name


def label_names(cfg: dict) -> tuple[str, ...]:
    """The configured natural-language label names, checked to be non-empty strings."""
    names = cfg.get("label_names")
    if not isinstance(names, list | tuple) or len(names) < 2:
        raise UserError(
            f"dataset {_name(cfg)}: label_names must list at least two label names, got "
            f'{names!r}. Set dataset.label_names, e.g. \'["negative", "positive"]\'.'
        )
    bad = [n for n in names if not isinstance(n, str) or not n.strip()]
    if bad:
        raise UserError(
            f"dataset {_name(cfg)}: label_names must be non-empty strings, but {bad!r} are not "
            f"(label_names: {names!r}). Quote them in YAML: bare yes/no/true/false are booleans."
        )
    return tuple(names)


def table_to_examples(table: Table, cfg: dict, split: str, origin: str) -> list[Example]:
    """Turn a table into examples: render text, drop `drop_labels` rows, map labels to ids."""
    columns = _required_columns(cfg)
    _check_columns(table, columns, cfg, origin)
    names, mapping = label_names(cfg), _label_map(cfg)
    drop = {_norm(v) for v in cfg.get("drop_labels") or []}
    raw_labels = table[cfg["label_field"]]
    examples, bad, empty = [], Counter(), []
    for i, raw in enumerate(raw_labels):
        key = _norm(raw)
        if key in drop:
            continue
        label = _encode_label(key, names, mapping)
        if label is None:
            bad[key] += 1
            continue
        text = _render(cfg, {c: table[c][i] for c in columns})
        if not str(text).strip():
            empty.append(i)
            continue
        examples.append(Example(f"{_name(cfg)}/{split}/{i}", text, label))
    if bad:
        raise _bad_labels(bad, names, cfg, origin)
    if empty:
        raise UserError(
            f"dataset {_name(cfg)}: {origin} has {len(empty)} rows whose text is empty (rows "
            f"{', '.join(map(str, empty[:5]))}{', ...' if len(empty) > 5 else ''}, counted from 0 "
            "after the header): a model answering an empty text measures nothing. Remove those "
            "rows or fix dataset.text_fields / dataset.text_template."
        )
    return examples


def _norm(value: Any) -> str:
    """A label value as a comparable string: 1, 1.0 and "1" all become "1"."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _label_map(cfg: dict) -> dict[str, int]:
    """The configured raw-value -> label-id map, values given as ids or label names."""
    names = label_names(cfg)
    mapping = {}
    for raw, target in (cfg.get("label_map") or {}).items():
        index = _encode_label(_norm(target), names, {})
        if index is None:
            raise UserError(
                f"dataset {_name(cfg)}: label_map sends {raw!r} to {target!r}, which is neither a "
                f"label id 0..{len(names) - 1} nor one of label_names {list(names)}. Fix label_map."
            )
        mapping[_norm(raw)] = index
    return mapping


def _encode_label(key: str, names: Sequence[str], mapping: dict[str, int]) -> int | None:
    """Label id of a normalised raw value (label_map, then an id, then a name), or None."""
    if key in mapping:
        return mapping[key]
    if re.fullmatch(r"-?\d+", key):
        index = int(key)
        return index if 0 <= index < len(names) else None
    lowered = [n.lower() for n in names]
    return lowered.index(key.lower()) if key.lower() in lowered else None


def _bad_labels(bad: Counter, names: tuple[str, ...], cfg: dict, origin: str) -> UserError:
    """UserError listing label values outside the label set."""
    shown = ", ".join(f"{v!r} ({n} rows)" for v, n in bad.most_common(8))
    return UserError(
        f"dataset {_name(cfg)}: {origin} has labels outside the label set: {shown}. The labels "
        f"must be ids 0..{len(names) - 1} or names in label_names {list(names)}. Fix "
        "dataset.label_names, map the values with dataset.label_map, or drop those rows with "
        "dataset.drop_labels."
    )


def _template_fields(template: str) -> list[str]:
    """Field names used by a str.format template."""
    return [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]


def _required_columns(cfg: dict) -> list[str]:
    """Columns the config reads: text fields, template fields and the label field."""
    fields = list(cfg.get("text_fields") or [])
    fields += _template_fields(cfg.get("text_template") or "")
    if not fields or "" in fields or not cfg.get("label_field"):
        raise UserError(
            f"dataset {_name(cfg)}: set dataset.text_fields (a list of columns), "
            "dataset.label_field and optionally dataset.text_template with named fields such "
            'as "{sentence}" (empty {} fields are not allowed).'
        )
    return list(dict.fromkeys([*fields, cfg["label_field"]]))


def _check_columns(table: Table, columns: list[str], cfg: dict, origin: str) -> None:
    """Raise UserError when the table lacks configured columns."""
    missing = [c for c in columns if c not in table]
    if missing:
        raise UserError(
            f"dataset {_name(cfg)}: {origin} has columns {list(table)} but the config names "
            f"{columns} (missing: {missing}). Set dataset.text_fields, dataset.text_template and "
            "dataset.label_field to columns the data has."
        )


def _render(cfg: dict, row: dict[str, Any]) -> str:
    """Example text: the fields joined by `text_template` (newlines when it is null)."""
    values = {k: "" if v is None else str(v) for k, v in row.items()}
    template = cfg.get("text_template")
    if not template:
        return "\n".join(values[f] for f in cfg["text_fields"]).strip()
    return template.format_map(values).strip()
