"""The Mitigation interface: a prompt context per example, a model wrapper and an optional fit."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

from sycophancy.models import LoadedModel
from sycophancy.records import PromptContext

Shot = tuple[tuple[str, str], ...]  # one in-context example: its (user, assistant) exchanges
Shots = Callable[[dict, int | None], list[Shot]]  # a probe's shot builder: (run config, train rows)
Context = Callable[[str], PromptContext]  # example id -> what the mitigation puts around its prompt
Monitor = Callable[[LoadedModel], dict]  # probe metrics of the model being trained (curves)


class Mitigation:
    """A mitigation family; the base class is the untouched model with `mitigation.system_prompt`
    (if any) as a system turn."""

    settings: ClassVar[tuple[str, ...]] = ()  # mitigation config keys (dotted) telling arms apart
    trainable: ClassVar[bool] = False  # whether train.py can fit it
    schema: ClassVar[type | None] = None  # dataclass of its `mitigation.*` keys (None: unchecked)
    # the `mitigation.*` keys `context` reads: of the mitigation block, train.py's measurement of the
    # untouched model depends on these alone, so a sweep over any other key reuses it (runs/memo.py)
    context_settings: ClassVar[tuple[str, ...]] = ("system_prompt",)

    def check(self, cfg: dict) -> None:
        """Refuse unusable settings in `cfg["mitigation"]` before the model loads."""

    def context(self, cfg: dict, shots: Shots) -> Context:
        """Each example's prompt context; `shots` builds the probe's in-context examples on demand."""
        system = cfg["mitigation"].get("system_prompt") or None
        return lambda _: PromptContext(system=system)

    def wrap(self, cfg: dict, lm: LoadedModel) -> LoadedModel:
        """The model the probe scores (evaluate.py); the loaded one unless the mitigation changes it."""
        return lm


class TrainableMitigation(Mitigation, ABC):
    """A mitigation train.py fits: it measures the model, calls `fit`, `save`s and measures again."""

    trainable = True

    @abstractmethod
    def fit(self, cfg: dict, lm: LoadedModel, trainer, datamodule, monitor: Monitor) -> LoadedModel:
        """Train on the datamodule's items with the Lightning trainer; return the trained model."""

    @abstractmethod
    def save(self, lm: LoadedModel, run_dir: Path) -> Path:
        """Write what `fit` trained into the run folder; return where (evaluate.py loads it)."""
