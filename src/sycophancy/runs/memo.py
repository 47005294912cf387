"""Measurements that a sweep's jobs repeat exactly, kept in the process for its next jobs.

Hydra's default launcher runs a multirun's jobs one after another in one process. Jobs that differ
only in `seed` (training randomness) or in the mitigation's own settings (a learning rate, a steering
layer and multiplier) probe the same untouched model on the same prompts and filter the same
training data: both depend on `data_seed`, never on `seed`, and on the mitigation block only through
the prompt context it puts around every probe (`Mitigation.context_settings`). The second job on
reuses the first one's results instead of recomputing them.
"""

from __future__ import annotations

import copy
import json
import logging
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar

from sycophancy.models.fingerprint import fingerprint
from sycophancy.schema import lookup

log = logging.getLogger(__name__)

T = TypeVar("T")
IGNORED = (
    "seed",
    "output_dir",
    "ckpt_path",
    "group",
)  # keys that leave the untouched model's results
KEPT = 8  # results held at most (oldest dropped first)
_held: OrderedDict[str, Any] = OrderedDict()


def job_key(plain: dict, what: str, lm: Any, mitigation: Any = None) -> str:
    """What a result depends on: which result, the resolved config without `IGNORED`, and the
    loaded model (class and weights' fingerprint; a model without one is never matched). Given the
    run's `mitigation`, its config block counts only through the prompt context (`context_of`)."""
    try:
        model = {"class": type(lm.model).__qualname__, **fingerprint(lm)}
    except (AttributeError, TypeError, RuntimeError):
        model = {"object": id(lm.model)}
    rest = {k: v for k, v in plain.items() if k not in IGNORED}
    if mitigation is not None:
        rest["mitigation"] = context_of(mitigation, plain.get("mitigation") or {})
    return json.dumps({"what": what, "config": rest, "model": model}, sort_keys=True, default=str)


def context_of(mitigation: Any, settings: dict) -> dict:
    """The part of a mitigation that shapes the prompts of the untouched model: the code of its
    `context` and the `mitigation.*` keys that code reads (`context_settings`)."""
    owner = next(c for c in type(mitigation).__mro__ if "context" in vars(c))
    read = {key: lookup(settings, key) for key in type(mitigation).context_settings}
    return {"context": f"{owner.__module__}.{owner.__qualname__}", "settings": read}


def remembered(key: str, compute: Callable[[], T], what: str) -> T:
    """`compute()`, or a copy of the result an earlier job of this process computed for `key`."""
    if key in _held:
        _held.move_to_end(key)
        log.info(
            "%s: the same as an earlier job of this sweep (it depends on nothing that differs "
            "between them); reused",
            what,
        )
        return copy.deepcopy(_held[key])
    result = compute()
    _held[key] = copy.deepcopy(result)
    while len(_held) > KEPT:
        _held.popitem(last=False)
    return result


def forget() -> None:
    """Drop every held result."""
    _held.clear()
