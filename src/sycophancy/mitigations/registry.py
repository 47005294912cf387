"""The mitigation kinds a run can look up: the built-in families, plus any registered plug-in."""

from __future__ import annotations

from sycophancy.errors import UserError
from sycophancy.mitigations.adapters import LoRA, PromptTuning
from sycophancy.mitigations.base import Mitigation, TrainableMitigation
from sycophancy.mitigations.prompting import InContext, SystemPrompt
from sycophancy.mitigations.steering import Steering
from sycophancy.mitigations.third_person import ThirdPerson
from sycophancy.registry import Registry

MITIGATIONS: Registry[Mitigation] = Registry(
    "mitigation",
    {
        "none": SystemPrompt(),
        "system_prompt": SystemPrompt(),
        "icl": InContext(),
        "third_person": ThirdPerson(),
        "prompt_tuning": PromptTuning(),
        "lora": LoRA(),
        "steering": Steering(),
    },
)
register_mitigation = MITIGATIONS.register  # @register_mitigation("steering") on a Mitigation class


def get_mitigation(kind: str | None) -> Mitigation:
    """The mitigation of `mitigation.kind`; an unknown kind is a UserError listing the known ones."""
    return MITIGATIONS.get(kind)


def get_trainable_mitigation(kind: str | None) -> TrainableMitigation:
    """The mitigation train.py fits; one without `fit` is a UserError listing those with one."""
    mitigation = get_mitigation(kind)
    if not mitigation.trainable:
        trainable = MITIGATIONS.kinds(lambda m: m.trainable)
        raise UserError(
            f"train.py fits a mitigation, and mitigation.kind={kind!r} has nothing to train; use one "
            f"of {', '.join(trainable)} (e.g. mitigation=prompt_tuning), or measure {kind} with "
            "evaluate.py."
        )
    return mitigation
