"""Prompt-side mitigations: a system instruction, and k-shot examples with random opinions."""

from __future__ import annotations

from collections.abc import Callable

from sycophancy.errors import UserError
from sycophancy.probes.probe_sets import items_for
from sycophancy.records import LabelledData, PromptContext
from sycophancy.seeds import example_rng

PROMPT_KINDS = ("none", "system_prompt", "icl", "prompt_tuning", "lora")


def shot_pool(
    train: LabelledData, dataset: dict, probe: dict, data_seed: int
) -> list[tuple[str, str]]:
    """(user turn, correct answer) pairs from the train split, each with a random user opinion."""
    items = items_for(train, dataset, probe, data_seed, conditions=("random",))
    return [(item.user_text, item.option_texts[item.gold]) for item in items]


def context_factory(
    mitigation: dict,
    pool: list[tuple[str, str]] | None = None,
    data_seed: int = 0,
) -> Callable[[str], PromptContext]:
    """A function giving each example id its prompt context under the mitigation."""
    kind = mitigation.get("kind", "none")
    if kind not in PROMPT_KINDS:
        raise UserError(
            f"Unknown mitigation kind '{kind}'; choose one of {', '.join(PROMPT_KINDS)}."
        )
    system = mitigation.get("system_prompt") or None
    k = int(mitigation.get("k", 0)) if kind == "icl" else 0
    if k and not pool:
        raise UserError(
            "mitigation=icl needs in-context examples from the train split, and it is empty; "
            "check the data set's train files or set mitigation.k=0."
        )

    def context(example_id: str) -> PromptContext:
        if not k:
            return PromptContext(system=system)
        rng = example_rng(data_seed, example_id, "icl")
        return PromptContext(system=system, shots=rng.sample(pool, min(k, len(pool))))

    return context
