"""Training data for the adapters: Wei et al.'s random-opinion items, filtered, in balanced batches."""

from __future__ import annotations

import logging
import random
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import lightning as L
import numpy as np
import torch
from omegaconf import OmegaConf
from torch.utils.data import DataLoader, Sampler

from sycophancy import scoring, sources
from sycophancy.errors import UserError
from sycophancy.probes.opinion import decisions_by_method, render_items
from sycophancy.probes.probe_sets import build_probe_set, items_for
from sycophancy.records import LabelledData, ProbeItem, PromptContext, TrainItem

log = logging.getLogger(__name__)

CONF_DIR = Path(__file__).resolve().parents[3] / "conf"


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
    return TrainItem(prompt, target, (right, target), item.example_id)


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


def balanced_batches(
    cells: list[tuple], batch_size: int, n_batches: int, seed: int
) -> list[list[int]]:
    """Batches drawing equally from every cell (opinion right/wrong x gold answer), cycling cells."""
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, cell in enumerate(cells):
        groups[cell].append(i)
    keys = sorted(groups, key=str)
    if not keys:
        return []
    rng = random.Random(seed)
    queues = {k: [] for k in keys}

    def take(key) -> int:
        if not queues[key]:
            queues[key] = rng.sample(groups[key], len(groups[key]))
        return queues[key].pop()

    batches = []
    for b in range(n_batches):
        per, extra = divmod(batch_size, len(keys))
        order = keys[b % len(keys) :] + keys[: b % len(keys)]
        batch = [take(k) for k in keys for _ in range(per)] + [take(k) for k in order[:extra]]
        rng.shuffle(batch)
        batches.append(batch)
    return batches


class BalancedSampler(Sampler):
    """Yields balanced index batches; a new draw every epoch (seed + epoch), starting at `epoch`.

    Under data parallelism every rank draws the same epoch and keeps every `num_replicas`-th batch from
    its `rank`, so the ranks see disjoint batches and the same number of steps (the epoch's batch count
    is rounded up to a multiple of `num_replicas`).
    """

    def __init__(
        self,
        cells: list[tuple],
        batch_size: int,
        n_batches: int,
        seed: int,
        num_replicas: int = 1,
        rank: int = 0,
        epoch: int = 0,
    ):
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} outside 0..{num_replicas - 1}")
        self.cells, self.batch_size, self.seed = cells, batch_size, seed
        self.num_replicas, self.rank = num_replicas, rank
        self.n_batches = -(-n_batches // num_replicas) * num_replicas  # whole rounds of ranks
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[list[int]]:
        batches = balanced_batches(
            self.cells, self.batch_size, self.n_batches, self.seed + self.epoch
        )
        self.epoch += 1
        return iter(batches[self.rank :: self.num_replicas])

    def __len__(self) -> int:
        return self.n_batches // self.num_replicas


def encode(lm, prompt: str, target: str) -> tuple[list[int], list[int]]:
    """Token ids of the model input and of the answer, tokenised as scoring.py reads them."""
    if lm.family == "seq2seq":
        return (
            lm.tokenizer(prompt, add_special_tokens=True)["input_ids"],
            lm.tokenizer(target, add_special_tokens=True)["input_ids"],
        )
    context = scoring.prompt_ids(lm, [prompt])[0]
    plain = scoring.encode(lm.tokenizer, prompt)
    return context, scoring.tail(lm.tokenizer, plain, prompt, target)


def collate(rows: list[tuple[list[int], list[int]]], family: str, pad: int) -> dict:
    """Pad a batch: causal = left-padded prompt+answer with labels -100 off the answer;
    seq2seq = right-padded encoder input and answer labels padded with -100."""
    if family == "seq2seq":
        width = max(len(p) for p, _ in rows)
        lw = max(len(a) for _, a in rows)
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        labels = torch.full((len(rows), lw), -100, dtype=torch.long)
        for i, (p, a) in enumerate(rows):
            ids[i, : len(p)], mask[i, : len(p)] = torch.tensor(p), 1
            labels[i, : len(a)] = torch.tensor(a)
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}
    width = max(len(p) + len(a) for p, a in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    labels = torch.full_like(ids, -100)
    for i, (p, a) in enumerate(rows):
        seq = p + a
        ids[i, width - len(seq) :], mask[i, width - len(seq) :] = torch.tensor(seq), 1
        labels[i, width - len(a) :] = torch.tensor(a)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


class SycophancyDataModule(L.LightningDataModule):
    """Random-opinion training items (train splits) and validation items (validation split)."""

    def __init__(
        self,
        lm,
        train_items: list[TrainItem],
        val_items: list[TrainItem],
        batch_size: int = 8,
        batches_per_epoch: int | None = None,
        seed: int = 0,
    ):
        super().__init__()
        self.lm, self.batch_size, self.seed = lm, int(batch_size), int(seed)
        self.train_items, self.val_items = train_items, val_items
        self.batches_per_epoch = int(batches_per_epoch or max(1, len(train_items) // batch_size))
        self.train_rows = [encode(lm, it.prompt, it.target) for it in train_items]
        self.val_rows = [encode(lm, it.prompt, it.target) for it in val_items]
        self.pad = scoring.pad_id(lm.tokenizer)

    def _collate(self, rows):
        return collate(rows, self.lm.family, self.pad)

    def train_dataloader(self) -> DataLoader:
        cells = [it.cell for it in self.train_items]
        replicas, rank = self.replicas()
        sampler = BalancedSampler(
            cells, self.batch_size, self.batches_per_epoch, self.seed, replicas, rank, self.epoch()
        )
        return DataLoader(self.train_rows, batch_sampler=sampler, collate_fn=self._collate)

    def replicas(self) -> tuple[int, int]:
        """(world size, global rank) of the attached trainer; (1, 0) without one."""
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 1, 0
        return int(trainer.world_size), int(trainer.global_rank)

    def epoch(self) -> int:
        """The epoch training starts at: the trainer's, restored from a checkpoint on resume (Lightning
        never calls set_epoch on a batch_sampler itself); 0 without a trainer."""
        trainer = getattr(self, "trainer", None)
        return 0 if trainer is None else int(trainer.current_epoch)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_rows, batch_size=self.batch_size, collate_fn=self._collate)


def cell_counts(items: list[TrainItem]) -> dict[str, int]:
    """How many items fall in each balance cell."""
    keys, counts = np.unique([str(it.cell) for it in items], return_counts=True)
    return dict(zip(keys.tolist(), counts.tolist(), strict=True))
