"""The Probe interface: what evaluate.py and train.py need from a probe kind, and what it returns."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from sycophancy.errors import UserError
from sycophancy.mitigations.base import Context, Monitor, Shot
from sycophancy.models import LoadedModel
from sycophancy.prompts import Message, renderer
from sycophancy.records import TrainItem


@dataclass(frozen=True)
class Table:
    """A printed summary as data: metric rows by columns, one metrics dict per column;
    reporting.tables renders it by `layout`."""

    layout: str  # "decision_methods": opinion-style, "readings": one "Are you sure?" challenge
    columns: dict[str, dict]  # column head (a decision method, a reading) -> its metrics
    rows: tuple[str, ...]  # metric keys, in order; a key no column has is left out
    title: str = "metric"  # the top-left cell
    primary: str | None = None  # the headline's column, starred


@dataclass(frozen=True)
class ProbeResult:
    """What one probe run gives back: examples.jsonl, metrics.json and the printed summary."""

    records: list[dict]  # one per prompt (or dialogue)
    metrics: dict  # the run adds its name, the probe kind and the wall time
    tables: list[Table | str]  # the printed summary, in order: tables and notes
    headline: float  # the number the run returns to sweepers


@dataclass(frozen=True)
class TrainingData:
    """What a trainable probe gives train.py to fit on."""

    items: list[TrainItem]  # training prompts with their targets
    validation: list[TrainItem]  # validation-loss prompts
    stats: dict  # per training data set: examples and kept (metrics.json training.data)


def dataset_config(cfg: dict) -> dict:
    """The dataset config with the run's data_seed, which fixes `limit` subsets."""
    return {**cfg["dataset"], "data_seed": int(cfg["data_seed"])}


def model_renderer(cfg: dict, lm: LoadedModel) -> Callable[[list[Message]], str]:
    """The model's prompt renderer: its chat template unless `model.chat_template` is false."""
    return renderer(lm.tokenizer, bool(cfg["model"].get("chat_template", lm.chat)))


class Probe(ABC):
    """A probe kind: check its config, build its items, score them with a model, measure."""

    headline_metric: ClassVar[str]  # the metrics.json key evaluate.py returns
    trainable: ClassVar[bool] = False  # whether train.py can train against it
    schema: ClassVar[type | None] = None  # dataclass of its `probe.*` keys (None: unchecked)

    def check(self, cfg: dict) -> None:  # noqa: B027 (nothing to check unless a probe says so)
        """Refuse unusable probe settings before the model loads."""

    def shots(self, cfg: dict, limit: int | None) -> list[Shot]:
        """In-context examples from the train split (a `limit`-row subset, None: all) for
        mitigation=icl."""
        raise UserError(
            f"mitigation=icl needs in-context examples, and probe={cfg['probe'].get('name')} builds "
            "none; use mitigation=none or mitigation=system_prompt with this probe."
        )

    @abstractmethod
    def run(self, cfg: dict, lm: LoadedModel, context: Context) -> ProbeResult:
        """Build the items from data and config, score them under each example's prompt context,
        decide and measure."""

    def headline(self, metrics: dict) -> float:
        """The headline metric's value; NaN where the run could not measure it."""
        return float(metrics.get(self.headline_metric, math.nan))


class TrainableProbe(Probe):
    """A probe train.py can train against: it measures before and after and supplies the data."""

    trainable = True
    training_metric: ClassVar[str]  # the after-training metric train.py returns

    def training_config(self, cfg: dict) -> dict:
        """The run config as train.py uses it (defaults that differ from evaluate.py's)."""
        return cfg

    @abstractmethod
    def check_training(self, cfg: dict) -> str:
        """Refuse what train.py cannot use, before the model loads; return the decision method
        every measurement, the training filter and the paired deltas use."""

    @abstractmethod
    def measure(self, cfg: dict, lm: LoadedModel, context: Context) -> ProbeResult:
        """Records and headline metrics of the model before or after training (the mitigation's
        part comes through `context` alone: a sweep's jobs share the untouched model's result)."""

    @abstractmethod
    def training_data(self, cfg: dict, lm: LoadedModel) -> TrainingData:
        """Training and validation items, built with the untouched model (e.g. to filter); they
        never depend on `cfg["mitigation"]` beyond its prompt context (runs/memo.py shares them)."""

    @abstractmethod
    def monitor(self, cfg: dict, lm: LoadedModel) -> Monitor:
        """A function measuring the model being trained on a small validation subset (curves)."""
