"""One split of a `dataset` config: pick its source (generator, local files, hub), load, check, limit."""

from __future__ import annotations

from sycophancy.errors import UserError
from sycophancy.records import Example, LabelledData, MCQuestion
from sycophancy.sources import generated
from sycophancy.sources.common import _check_kind, _check_not_empty, _name, _seed, limit_items
from sycophancy.sources.hub import _hub_table
from sycophancy.sources.labels import label_names, table_to_examples
from sycophancy.sources.multiple_choice import _mc_reader
from sycophancy.sources.tables import _local_table, _no_data_dir


def load_classification(cfg: dict, split: str) -> LabelledData:
    """Load one split of the classification data set described by a `dataset` config."""
    _check_kind(cfg, "classification")
    names = label_names(cfg)
    source = resolve_source(cfg)
    if source == "generated":
        examples = _generated(cfg, split, generated.CLASSIFICATION)
        _check_generated_labels(examples, names, cfg)
        origin = "the generator"
    else:
        table, origin = _local_table(cfg, split) if source == "local" else _hub_table(cfg, split)
        examples = table_to_examples(table, cfg, split, origin)
    _check_not_empty(examples, cfg, split, origin)
    return LabelledData(_name(cfg), names, limit_items(examples, cfg.get("limit"), _seed(cfg)))


def load_multiple_choice(cfg: dict, split: str) -> list[MCQuestion]:
    """Load one split of the multiple-choice data set described by a `dataset` config."""
    _check_kind(cfg, "multiple_choice")
    source = resolve_source(cfg)
    if source == "generated":
        questions, origin = _generated(cfg, split, generated.MULTIPLE_CHOICE), "the generator"
    else:
        questions, origin = _mc_reader(cfg, source)(cfg, split)
    _check_not_empty(questions, cfg, split, origin)
    return limit_items(questions, cfg.get("limit"), _seed(cfg))


def resolve_source(cfg: dict) -> str:
    """Where the data comes from: "generated", "local" (data_dir set) or "hub"."""
    if cfg.get("source") == "generated":
        return "generated"
    if cfg.get("data_dir") not in (None, ""):
        return "local"
    if cfg.get("source") == "local":
        raise _no_data_dir(cfg)
    return "hub"


def _generated(cfg: dict, split: str, table: dict) -> list:
    """Examples or questions from the named generator."""
    return generated.generator(cfg.get("generator") or _name(cfg), table)(split)


def _check_generated_labels(examples: list[Example], names: tuple[str, ...], cfg: dict) -> None:
    """Raise UserError when a generator's labels do not fit the configured label names."""
    top = max((e.label for e in examples), default=0)
    if top >= len(names):
        raise UserError(
            f"dataset {_name(cfg)}: the generator emits labels 0..{top} but label_names has "
            f"{len(names)} names ({list(names)}). Give one name per label in dataset.label_names."
        )
