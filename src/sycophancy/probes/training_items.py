"""Training data against sycophancy from an opinion probe: Wei et al.'s random-opinion items,
filtered; and what train.py checks and defaults before it builds them."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

from omegaconf import OmegaConf

from sycophancy import scoring, sources
from sycophancy.errors import UserError
from sycophancy.probes.base import dataset_config
from sycophancy.probes.probe_sets import (
    build_probe_set,
    decision_method,
    items_for,
    probe_conditions,
)
from sycophancy.prompts import render_items
from sycophancy.records import LabelledData, ProbeItem, PromptContext, TrainItem
from sycophancy.scoring.decisions import decisions_by_method

log = logging.getLogger(__name__)

CONF_DIR = Path(__file__).resolve().parents[3] / "conf"
# content-free examples a contextual run scores when probe.content_free_examples is 0 (train.yaml)
CONTEXTUAL_CONTENT_FREE_EXAMPLES = 16


def with_content_free(probe: dict) -> dict:
    """The probe config; contextual calibration gets CONTEXTUAL_CONTENT_FREE_EXAMPLES content-free
    examples where probe.content_free_examples is 0 (train.yaml's default, enough for balanced)."""
    if probe.get("calibration") != "contextual" or int(probe.get("content_free_examples") or 0):
        return probe
    log.info(
        "probe.calibration=contextual: scoring %d content-free examples (probe.content_free_examples "
        "is 0)",
        CONTEXTUAL_CONTENT_FREE_EXAMPLES,
    )
    return {**probe, "content_free_examples": CONTEXTUAL_CONTENT_FREE_EXAMPLES}


def checked_method(cfg: dict) -> str:
    """The run's decision method, refused before any model loads where train.py cannot use it."""
    missing = [c for c in ("none", "wrong") if c not in probe_conditions(cfg["probe"])]
    if missing:
        raise UserError(
            f"train.py measures alignment with the wrong opinion over examples answered right "
            f"without one, so probe.conditions must include none and wrong (missing: "
            f"{', '.join(missing)}); e.g. probe.conditions=[none,wrong,right]."
        )
    method = decision_method(cfg["probe"])
    if method == "generate" and cfg["training"].get("filter", True):
        raise UserError(
            "training.filter decides from option scores, and probe.scoring=generate gives replies; "
            "set training.filter=false to train on every example, or use probe.scoring=logprob."
        )
    return method


def dataset_configs(cfg: dict) -> list[dict]:
    """The training data sets: the run's own, or `training.datasets` (names or dicts, by name)."""
    entries = cfg["training"].get("datasets") or [cfg["dataset"]]
    out = []
    for entry in entries:
        if isinstance(entry, str):
            entry = {"name": entry}
        name = entry.get("name")
        own = name == cfg["dataset"].get("name")
        base = dict(cfg["dataset"]) if own else _named_dataset(name)
        out.append({**base, **entry, "data_seed": int(cfg["data_seed"])})
    return out


def _named_dataset(name: str | None) -> dict:
    """A dataset config from the conf/dataset group by name."""
    path = config_dir() / "dataset" / f"{name}.yaml"
    if not path.is_file():
        options = sorted(p.stem for p in (config_dir() / "dataset").glob("*.yaml"))
        raise UserError(
            f"training.datasets names {name!r}, which is not a dataset config; choose from "
            f"{', '.join(options)}."
        )
    return OmegaConf.to_container(OmegaConf.load(path), resolve=True)


def config_dir() -> Path:
    """The primary config folder of the running Hydra app, else the repository's conf/."""
    try:
        from hydra.core.hydra_config import HydraConfig

        for source in HydraConfig.get().runtime.config_sources:
            if source.provider == "main" and source.schema == "file":
                return Path(source.path)
    except ValueError:
        pass
    return CONF_DIR


def training_probe(probe: dict, training: dict) -> dict:
    """The probe config used to synthesise training items (training-only negation rate)."""
    out = dict(probe)
    if training.get("negation_rate") is not None:
        out["negation_rate"] = float(training["negation_rate"])
    return out


def train_split(data_cfg: dict, limit) -> LabelledData:
    """The train split of one data set, a seeded subset of `limit` examples."""
    return sources.load_classification({**data_cfg, "limit": limit}, "train")


def random_items(data: LabelledData, data_cfg: dict, probe: dict, data_seed: int):
    """(random-opinion item, no-opinion item) pairs for every example of a split."""
    rand = items_for(data, data_cfg, probe, data_seed, conditions=("random",))
    none = items_for(data, data_cfg, probe, data_seed, conditions=("none",))
    if [i.example_id for i in rand] != [i.example_id for i in none]:
        raise ValueError("random and no-opinion items must pair up one to one")
    return list(zip(rand, none, strict=True))


def correct_without_opinion(
    lm,
    items: list[ProbeItem],
    render: Callable,
    method: str,
    batch_size: int = 16,
    content_free: Sequence[ProbeItem] = (),
) -> list[bool]:
    """Whether the frozen model answers each no-opinion item right under the decision method
    (contextual: offsets from the content-free twins' scores)."""
    texts = render_items(items, render, lambda _: PromptContext())
    scores = scoring.score_options(
        lm, texts, [list(it.options) for it in items], batch_size=batch_size, progress="filter"
    )
    cf_scores = None
    if content_free:
        cf_scores = scoring.score_options(
            lm,
            render_items(list(content_free), render, lambda _: PromptContext()),
            [list(it.options) for it in content_free],
            batch_size=batch_size,
            progress="filter content-free",
        )
    preds, _ = decisions_by_method(items, scores, list(content_free), cf_scores, primary=method)
    if method not in preds:
        raise UserError(
            f"training.filter cannot decide with {method!r} (available: {', '.join(preds)}); "
            "contextual calibration needs probe.content_free_examples > 0, and "
            "probe.scoring=generate needs training.filter=false."
        )
    return [p == it.gold for p, it in zip(preds[method], items, strict=True)]


def content_free_twins(data: LabelledData, data_cfg: dict, probe: dict, data_seed: int):
    """No-opinion content-free items for a split, built as the probe set builds its own."""
    return build_probe_set(
        data, data_cfg, {**probe, "conditions": ["none"]}, data_seed
    ).content_free


def to_train_item(item: ProbeItem, render: Callable) -> TrainItem:
    """A training prompt from a random-opinion probe item: the gold answer's text is the target."""
    prompt = render_items([item], render, lambda _: PromptContext())[0]
    right = item.user_option == item.gold
    target = item.option_texts[item.gold]
    user = None if item.user_option is None else item.option_texts[item.user_option]
    return TrainItem(prompt, target, (right, target), item.example_id, user)


def build_train_items(cfg: dict, lm, render: Callable, method: str) -> tuple[list[TrainItem], dict]:
    """Training items from every configured train split, filtered with the run's decision method;
    plus counts per data set."""
    training, probe = cfg["training"], cfg["probe"]
    probe_t = training_probe(probe, training)
    seed = int(cfg["data_seed"])
    items: list[TrainItem] = []
    stats: dict = {}
    for data_cfg in dataset_configs(cfg):
        data = train_split(data_cfg, data_cfg.get("train_limit", training.get("train_limit")))
        pairs = random_items(data, data_cfg, probe_t, seed)
        keep = [True] * len(pairs)
        if training.get("filter", True):
            twins = (
                content_free_twins(data, data_cfg, probe_t, seed) if method == "contextual" else []
            )
            keep = correct_without_opinion(
                lm,
                [none for _, none in pairs],
                render,
                method,
                int(training.get("score_batch_size", 16)),
                twins,
            )
        kept = [to_train_item(rand, render) for (rand, _), k in zip(pairs, keep, strict=True) if k]
        stats[data.name] = {"examples": len(pairs), "kept": len(kept)}
        log.info("training data %s: kept %d of %d examples", data.name, len(kept), len(pairs))
        items += kept
    if not items:
        raise UserError(
            "No training examples are left after filtration (the frozen model answers none "
            "right without an opinion); set training.filter=false or use more data."
        )
    return items, stats


def validation_subset(cfg: dict) -> tuple[LabelledData, dict]:
    """The first `training.val_probe_limit` examples of the probed validation split."""
    limit = cfg["training"].get("val_probe_limit")
    data_cfg = dataset_config(cfg)
    data = sources.load_classification(data_cfg, "validation")
    if limit is not None:
        data = LabelledData(data.name, data.label_names, data.examples[: int(limit)])
    return data, data_cfg


def validation_items(cfg: dict, render: Callable) -> list[TrainItem]:
    """Random-opinion items from the validation split (validation loss)."""
    data, data_cfg = validation_subset(cfg)
    probe = training_probe(cfg["probe"], cfg["training"])
    items = items_for(data, data_cfg, probe, int(cfg["data_seed"]), conditions=("random",))
    return [to_train_item(item, render) for item in items]
