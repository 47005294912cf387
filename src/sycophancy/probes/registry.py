"""The probe kinds a run can look up: the built-in probes, plus any registered plug-in."""

from __future__ import annotations

from sycophancy.errors import UserError
from sycophancy.probes.ab import ABProbe
from sycophancy.probes.are_you_sure import AreYouSureProbe
from sycophancy.probes.base import Probe, TrainableProbe
from sycophancy.probes.opinion import OpinionProbe
from sycophancy.registry import Registry

PROBES: Registry[Probe] = Registry(
    "probe",
    {
        "opinion": OpinionProbe(),
        "opinion_label": OpinionProbe(),
        "are_you_sure": AreYouSureProbe(),
        "perez_ab": ABProbe(),
    },
)
register_probe = PROBES.register  # @register_probe("answer") on a Probe class


def get_probe(kind: str | None) -> Probe:
    """The probe of `probe.kind`; an unknown kind is a UserError listing the known ones."""
    return PROBES.get(kind)


def get_trainable_probe(kind: str | None) -> TrainableProbe:
    """The probe train.py trains against; one it cannot is a UserError listing those it can."""
    probe = get_probe(kind)
    if not probe.trainable:
        trainable = PROBES.kinds(lambda p: p.trainable)
        raise UserError(
            f"train.py trains against a probe that supplies training data, and probe.kind={kind!r} "
            f"does not; use one of {', '.join(trainable)} (e.g. probe=opinion_label), or measure "
            f"{kind} with evaluate.py."
        )
    return probe
