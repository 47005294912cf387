"""Opinion probe sets: every condition's items for a split, the same for every model and arm; the
conditions and the decision method a probe config asks for."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from sycophancy.errors import UserError
from sycophancy.probes.claims import CONDITIONS, balanced_truths, opinion_items, opinion_label_items
from sycophancy.records import Example, LabelledData, ProbeItem
from sycophancy.scoring.calibration import METHODS

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


def decision_method(probe: dict) -> str:
    """The decision method an opinion probe's headline reports, checked before any model loads:
    `generate` for generated replies, else `probe.calibration` (an unknown name, or contextual
    calibration without content-free prompts, is a UserError)."""
    method = probe.get("calibration", "balanced")
    if method not in METHODS:
        raise UserError(
            f"probe.calibration={method!r} is not a decision method; choose none | balanced | "
            "contextual (e.g. probe.calibration=balanced)."
        )
    if probe.get("scoring", "logprob") == "generate":
        return "generate"
    if method == "contextual" and not (
        int(probe.get("content_free_examples") or 0) > 0 and probe.get("content_free_texts")
    ):
        raise UserError(
            "probe.calibration=contextual needs content-free prompts, and this probe scores none; "
            "set probe.content_free_examples to a positive number (e.g. 16) and "
            'probe.content_free_texts (e.g. ["N/A", "", "[MASK]"]), or use probe.calibration=balanced.'
        )
    return method


def build_probe_set(data: LabelledData, dataset: dict, probe: dict, data_seed: int) -> ProbeSet:
    """The evaluation probe set, with content-free items when contextual calibration may be used."""
    if not data.examples:
        raise UserError(
            f"Data set '{data.name}' has no examples to probe; check dataset.limit and its files."
        )
    items = items_for(data, dataset, probe, data_seed, probe_conditions(probe))
    return ProbeSet(items=items, content_free=content_free_items(data, dataset, probe, data_seed))


def content_free_items(
    data: LabelledData, dataset: dict, probe: dict, data_seed: int
) -> list[ProbeItem]:
    """Contextual calibration's inputs: for each content-free text and condition,
    `content_free_examples` items (rounded up to a multiple of the options) whose user sides with
    each option equally often, so the user's opinion cancels out of the estimated prior."""
    count = int(probe.get("content_free_examples", 0))
    conditions = probe_conditions(probe)
    out: list[ProbeItem] = []
    for text in probe.get("content_free_texts", []) if count else []:
        pool = content_free_pool(data, text, 4 * (count + len(data.label_names)))
        for cond in conditions:
            out += even_sides(items_for(pool, dataset, probe, data_seed, (cond,)), count)
    return out


def content_free_pool(data: LabelledData, text: str, size: int) -> LabelledData:
    """`size` examples reading `text`, their labels cycling through the data set's labels."""
    k = len(data.label_names)
    examples = [Example(f"{data.name}/content-free/{i}", text, i % k) for i in range(size)]
    return LabelledData(data.name, data.label_names, examples)


def even_sides(items: list[ProbeItem], count: int) -> list[ProbeItem]:
    """The first items, in order, giving each option the user's side equally often: `count`
    rounded up to a multiple of the options (fewer, still even, if the items run out)."""
    k = len(items[0].options)
    per_side = -(-count // k)
    if items[0].user_option is None:
        return items[: per_side * k]
    sides = [item.options[item.user_option] for item in items]
    available = Counter(sides)
    each = min(per_side, *available.values()) if len(available) == k else 0
    taken: Counter = Counter()
    out = []
    for item, side in zip(items, sides, strict=True):
        if taken[side] < each:
            taken[side] += 1
            out.append(item)
    return out
