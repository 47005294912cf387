"""Shared-prefix reuse for causal scoring: plan which rows share which prefix, and run them on
key/value caches of those prefixes instead of recomputing every row from its first token.

Rows (token id lists) are planned on three levels: the prefix every row shares (chat template,
system prompt) is computed once per call; rows sharing a longer prefix (the three conditions of one
example share its biography, an `icl` example's conditions share its k-shot block) form a group whose
prefix is computed once per batch, on top of the first; each row then computes only its own suffix.
Positions and attention masks are those of the unsplit row, so a row's scores equal the full
recompute's up to float rounding.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

MIN_SHARED = (
    4  # rows join a group when they share at least this many tokens beyond the global prefix
)


@dataclass(frozen=True)
class Group:
    """Rows of one batch that share `prefix` tokens (counted from the row start)."""

    prefix: int
    rows: tuple[int, ...]


@dataclass(frozen=True)
class Plan:
    """The global prefix length and the batches, each a list of groups."""

    shared: int
    batches: list[list[Group]]


def common_length(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common prefix of two token lists."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def plan(
    contexts: Sequence[Sequence[int]],
    tails: Sequence[int],
    batch_size: int,
    min_shared: int = MIN_SHARED,
) -> Plan:
    """Groups of rows sharing prefixes, packed whole into batches of at most `batch_size` rows.

    `tails[i]` is how many last tokens of row i must stay in its own suffix (the positions whose
    next-token distributions are read). Groups are packed longest suffix first, so rows padded
    together have similar suffix lengths.
    """
    if not contexts:
        return Plan(0, [])
    order = sorted(range(len(contexts)), key=lambda i: contexts[i])
    room = [
        len(contexts[i]) - tails[i] for i in range(len(contexts))
    ]  # longest prefix a row allows
    first, last = contexts[order[0]], contexts[order[-1]]
    shared = max(0, min(common_length(first, last), min(room)))  # lexicographic ends bound the LCP
    groups: list[Group] = []
    run = [order[0]]
    for a, b in zip(order, order[1:], strict=False):
        if common_length(contexts[a], contexts[b]) >= shared + min_shared:
            run.append(b)
        else:
            groups += _split(_group(contexts, room, run, shared), batch_size)
            run = [b]
    groups += _split(_group(contexts, room, run, shared), batch_size)
    width = {id(g): max(len(contexts[r]) - g.prefix for r in g.rows) for g in groups}
    groups.sort(key=lambda g: -width[id(g)])
    batches: list[list[Group]] = []
    count = batch_size
    for group in groups:
        if count + len(group.rows) > batch_size:
            batches.append([])
            count = 0
        batches[-1].append(group)
        count += len(group.rows)
    return Plan(shared, batches)


def _group(
    contexts: Sequence[Sequence[int]], room: list[int], rows: list[int], shared: int
) -> Group:
    """One group of lexicographically consecutive rows and the prefix they all share."""
    if len(rows) == 1:
        return Group(shared, tuple(rows))  # a lone row gains nothing from a prefix of its own
    prefix = common_length(contexts[rows[0]], contexts[rows[-1]])
    return Group(max(shared, min([prefix] + [room[r] for r in rows])), tuple(rows))


def _split(group: Group, batch_size: int) -> list[Group]:
    """A group cut into chunks that fit a batch (each chunk computes the prefix again)."""
    rows = group.rows
    return [Group(group.prefix, rows[i : i + batch_size]) for i in range(0, len(rows), batch_size)]


# ---------------------------------------------------------------- running a plan


def cache_keyword(model: Any) -> str | None:
    """The forward keyword that takes a key/value cache (`cache` in transformers ≥ 5.x, else
    `past_key_values`), or None when the model's forward takes neither. A wrapper whose forward
    passes its keyword arguments on (peft, a steered model) is looked through."""
    seen: set[int] = set()
    while model is not None and id(model) not in seen:
        seen.add(id(model))
        params = inspect.signature(model.forward).parameters
        for name in ("cache", "past_key_values"):
            if name in params:
                return name
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            return None
        model = _wrapped(model)
    return None


def _wrapped(model: Any) -> Any:
    """The model a wrapper runs (peft's base model, our wrappers' `base`), or None."""
    if "get_base_model" in dir(type(model)):
        return model.get_base_model()
    return model.__dict__.get("_modules", {}).get("base")


class PrefixRunner:
    """Runs the batches of a plan on one causal model, reusing the global prefix's cache."""

    def __init__(self, model: Any, pad: int, device: Any, keyword: str):
        self.model, self.pad, self.device, self.keyword = model, pad, device, keyword
        self.shared_kv: list[tuple[Any, Any]] | None = None
        self.shared_tokens = 0  # tokens of the rows the global prefix covers
        self.shared_len = 0  # positions it fills in the cache (a soft prompt adds its own)

    def start(self, tokens: Sequence[int]) -> None:
        """Compute the cache of the prefix every row shares (nothing when it is empty)."""
        self.shared_tokens = self.shared_len = len(tokens)
        self.shared_kv = None
        if not tokens:
            return
        ids = torch.tensor([list(tokens)], dtype=torch.long, device=self.device)
        mask = torch.ones_like(ids)
        cache = self._cache(None, None)
        self.model(input_ids=ids, attention_mask=mask, position_ids=_positions(mask),
                   use_cache=True, logits_to_keep=1, **{self.keyword: cache})  # fmt: skip
        self.shared_kv = _tensors(cache)
        self.shared_len = cache.get_seq_length()

    def tail_logits(
        self, contexts: Sequence[Sequence[int]], groups: list[Group], keep: int
    ) -> torch.Tensor:
        """[rows, keep, vocab] logits of the last `keep` positions of each row of the batch, rows in
        group order."""
        n_groups = len(groups)
        shared_mask = torch.ones((n_groups, self.shared_len), dtype=torch.long, device=self.device)
        cache = self._cache(self.shared_kv, torch.zeros(n_groups, dtype=torch.long))
        extensions = [list(contexts[g.rows[0]][self.shared_tokens : g.prefix]) for g in groups]
        group_mask = shared_mask
        if any(extensions):
            ids, mask = _left_pad(extensions, self.pad, self.device)
            group_mask = torch.cat([shared_mask, mask], dim=1)
            self._forward(ids, group_mask, cache, 1)
        owner = torch.tensor([i for i, g in enumerate(groups) for _ in g.rows], dtype=torch.long)
        suffixes = [list(contexts[r][g.prefix :]) for g in groups for r in g.rows]
        cache = self._cache(_tensors(cache) if n_groups and cache_filled(cache) else None, owner)
        ids, mask = _left_pad(suffixes, self.pad, self.device)
        full_mask = torch.cat([group_mask[owner.to(self.device)], mask], dim=1)
        return self._forward(ids, full_mask, cache, keep)[:, -keep:]

    def _forward(self, ids: Any, full_mask: Any, cache: Any, keep: int) -> Any:
        """One forward of `ids` after the cached positions; positions follow the unsplit rows."""
        positions = _positions(full_mask)[:, -ids.shape[1] :]
        out = self.model(input_ids=ids, attention_mask=full_mask, position_ids=positions,
                         use_cache=True, logits_to_keep=keep, **{self.keyword: cache})  # fmt: skip
        return out.logits

    def _cache(self, kv: list[tuple[Any, Any]] | None, rows: Any) -> Any:
        """A fresh DynamicCache holding `kv`'s batch rows `rows` (an empty one for None)."""
        from transformers import DynamicCache

        if kv is None:
            return DynamicCache(config=self.model.config)
        rows = rows.to(self.device)
        data = [(k.index_select(0, rows), v.index_select(0, rows)) for k, v in kv]
        return DynamicCache(ddp_cache_data=data, config=self.model.config)


def cache_filled(cache: Any) -> bool:
    """Whether a cache holds any position."""
    return cache.get_seq_length() > 0


def _tensors(cache: Any) -> list[tuple[Any, Any]]:
    """The (keys, values) of every layer of a DynamicCache."""
    return [(layer.keys, layer.values) for layer in cache.layers]


def _left_pad(seqs: list[list[int]], pad: int, device: Any) -> tuple[Any, Any]:
    """Left-padded [b, t] ids and mask (rows may be empty: all padding)."""
    width = max(1, max(len(s) for s in seqs))
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        if s:
            ids[i, width - len(s) :] = torch.tensor(s, dtype=torch.long)
            mask[i, width - len(s) :] = 1
    return ids.to(device), mask.to(device)


def _positions(mask: Any) -> Any:
    """Position ids counting only real tokens from each row's start."""
    return (mask.cumsum(dim=1) - 1).clamp(min=0)
