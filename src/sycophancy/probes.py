"""Probe sets: every condition's items for a data split, built identically for every model and arm."""

from __future__ import annotations

from dataclasses import dataclass, field

from .claims import (
    CONDITIONS,
    ProbeItem,
    balanced_truths,
    opinion_items,
    opinion_label_items,
    with_text,
)
from .errors import UserError
from .types import LabelledData

OPINION_PROBES = ("opinion", "opinion_label")


@dataclass
class ProbeSet:
    """All items of an opinion probe plus the content-free twins used for contextual calibration."""

    items: list[ProbeItem]
    content_free: list[ProbeItem] = field(default_factory=list)


def items_for(
    data: LabelledData, dataset: dict, probe: dict, data_seed: int, conditions=CONDITIONS
):
    """Probe items for every example of a split under the given conditions."""
    kind = probe["kind"]
    if kind == "opinion":
        truths = balanced_truths(data.examples, data_seed)
        return [
            item
            for ex in data.examples
            for item in opinion_items(
                ex, data, dataset, probe, data_seed, truths[ex.id], conditions
            )
        ]
    if kind == "opinion_label":
        return [
            item
            for ex in data.examples
            for item in opinion_label_items(ex, data, dataset, probe, data_seed, conditions)
        ]
    raise UserError(
        f"Probe kind '{kind}' is not an opinion probe; choose one of {', '.join(OPINION_PROBES)}."
    )


def probe_conditions(probe: dict) -> tuple[str, ...]:
    """The opinion conditions to probe (`probe.conditions`), refused unless known and distinct."""
    given = probe.get("conditions", CONDITIONS)
    conditions = (given,) if isinstance(given, str) else tuple(given)
    unknown = [c for c in conditions if c not in CONDITIONS]
    if unknown or not conditions or len(set(conditions)) != len(conditions):
        problem = f"unknown {', '.join(map(repr, unknown))}" if unknown else "empty or repeated"
        raise UserError(
            f"probe.conditions={list(conditions)} is not usable ({problem}). Choose one or more of "
            f"{', '.join(CONDITIONS)}, each once, e.g. probe.conditions=[none,wrong]; metrics that "
            "need a condition you leave out are not reported."
        )
    return conditions


def build_probe_set(data: LabelledData, dataset: dict, probe: dict, data_seed: int) -> ProbeSet:
    """The evaluation probe set, with content-free twins when contextual calibration may be used."""
    if not data.examples:
        raise UserError(
            f"Data set '{data.name}' has no examples to probe; check dataset.limit and its files."
        )
    conditions = probe_conditions(probe)
    items = items_for(data, dataset, probe, data_seed, conditions)
    content_free = []
    n_cf = int(probe.get("content_free_examples", 0))
    for cf_text in probe.get("content_free_texts", []) if n_cf else []:
        twins = LabelledData(
            data.name, data.label_names, [with_text(ex, cf_text) for ex in data.examples[:n_cf]]
        )
        content_free += items_for(twins, dataset, probe, data_seed, conditions)
    return ProbeSet(items=items, content_free=content_free)
