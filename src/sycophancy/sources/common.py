"""Shared by every source: config helpers, seeded limits and checks on what was loaded."""

from __future__ import annotations

import hashlib
import heapq
from typing import Any

from sycophancy.errors import UserError

Table = dict[str, list]  # column name -> values, all columns the same length


def _name(cfg: dict) -> str:
    """The data set's name for ids and messages."""
    return str(cfg.get("name") or "dataset")


def _seed(cfg: dict) -> int:
    """The seed that picks `limit` subsets."""
    seed = cfg.get("data_seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise UserError(f"data_seed must be a whole number, not {seed!r}. Set e.g. data_seed=0.")
    return seed


def limit_items(items: list, limit: Any, seed: int) -> list:
    """A fixed seeded subset of `limit` items (kept in order); nested as `limit` grows."""
    if limit is None:
        return items
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise UserError(
            f"dataset.limit must be a positive whole number or null, not {limit!r}. "
            "Set e.g. dataset.limit=200, or dataset.limit=null for the whole split."
        )
    if limit >= len(items):
        return items
    keep = set(heapq.nsmallest(limit, range(len(items)), key=lambda i: _rank(seed, items[i].id)))
    return [item for i, item in enumerate(items) if i in keep]


def _rank(seed: int, item_id: str) -> bytes:
    """A stable pseudo-random sort key for one item under one seed."""
    return hashlib.blake2b(f"{seed}:{item_id}".encode(), digest_size=8).digest()


def _check_kind(cfg: dict, kind: str) -> None:
    """Raise UserError when the config describes the other kind of data set."""
    if cfg.get("kind", kind) != kind:
        raise UserError(
            f"dataset {_name(cfg)} is a {cfg.get('kind')} data set, but this step needs a "
            f"{kind} one. Pick a {kind} dataset (see conf/dataset/) for this experiment."
        )


def _split_entry(cfg: dict, key: str, split: str) -> str:
    """The hub split or file configured for `split`, or UserError naming the known splits."""
    table = cfg.get(key) or {}
    if split not in table or table[split] in (None, ""):
        known = ", ".join(k for k, v in table.items() if v not in (None, "")) or "none"
        raise UserError(
            f"dataset {_name(cfg)} has no split {split!r} (dataset.{key} configures: {known}). "
            f"Ask for one of those splits, or add dataset.{key}.{split}=..."
        )
    return str(table[split])


def _check_not_empty(items: list, cfg: dict, split: str, origin: str) -> None:
    """Raise UserError when a split has no rows left."""
    if not items:
        drop = cfg.get("drop_labels") or []
        raise UserError(
            f"dataset {_name(cfg)}, split {split!r}: no examples left from {origin}"
            + (f" after dropping labels {drop}" if drop else "")
            + ". Check that the file holds data rows and that the filters, "
            "dataset.subjects / dataset.task or dataset.drop_labels, leave some."
        )
