"""Training batches: balanced over opinion-right/wrong and gold-answer cells, tokenised as scoring reads them."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable, Iterator

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from sycophancy import scoring
from sycophancy.records import TrainItem


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

    `position()`, if given, says at each iteration which (epoch, batches already trained in it) to
    start from, so a run resumed mid-epoch continues with the very batches an uninterrupted run draws.

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
        position: Callable[[], tuple[int, int]] | None = None,
    ):
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} outside 0..{num_replicas - 1}")
        self.cells, self.batch_size, self.seed = cells, batch_size, seed
        self.num_replicas, self.rank = num_replicas, rank
        self.n_batches = -(-n_batches // num_replicas) * num_replicas  # whole rounds of ranks
        self.epoch = int(epoch)
        self.position = position

    def __iter__(self) -> Iterator[list[int]]:
        skip = 0
        if self.position is not None:
            self.epoch, skip = self.position()
        batches = balanced_batches(
            self.cells, self.batch_size, self.n_batches, self.seed + self.epoch
        )
        self.epoch += 1
        return iter(batches[self.rank :: self.num_replicas][skip:])

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
        if getattr(self, "trainer", None) is not None:
            sampler.position = lambda: self.position(len(sampler))
        # its own generator: iterating must not draw from the global RNG that dropout reads
        return DataLoader(
            self.train_rows,
            batch_sampler=sampler,
            collate_fn=self._collate,
            generator=torch.Generator().manual_seed(self.seed),
        )

    def position(self, steps_per_epoch: int) -> tuple[int, int]:
        """(epoch, batches of it already trained) from the trainer's optimizer step: every epoch has
        `steps_per_epoch` batches, so a run resumed mid-epoch (or from an epoch's end, where
        Lightning's epoch counter still reads the finished epoch) skips exactly what was trained."""
        batches = int(self.trainer.global_step) * int(self.trainer.accumulate_grad_batches)
        return divmod(batches, max(steps_per_epoch, 1))

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
