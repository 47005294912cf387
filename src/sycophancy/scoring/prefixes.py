"""Shared-prefix reuse for causal scoring: plan which rows share which prefix, and compute each
shared prefix once instead of recomputing every row from its first token.

Rows (token id lists) are planned on three levels: the prefix every row shares (chat template,
system prompt) is computed once per call and kept as a key/value cache; rows sharing a longer prefix
(the three conditions of one example share its biography, an `icl` example's conditions share its
k-shot block) form a group, grouped on the longest prefix they share; each row then computes only
its own suffix. A batch is one forward pass: each group is one packed sequence (its prefix, then
each row's suffix in a slot of its own) under a tree attention mask, so a token sees exactly what it
sees in its unsplit row, at the unsplit row's positions: a row's scores equal the full recompute's
up to float rounding.
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
# most rows packed in one sequence (its attention grows with the square of its length)
GROUP_ROWS = 8


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
    reach = [  # how far consecutive rows (in sorted order) may share a prefix
        min(common_length(contexts[x], contexts[y]), room[x], room[y])
        for x, y in zip(order, order[1:], strict=False)
    ]
    rows = _Rows(order, reach, shared, min_shared, min(batch_size, GROUP_ROWS))
    groups = rows.best(0, len(order) - 1)[0]
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


@dataclass(frozen=True)
class _Rows:
    """Rows in sorted order and how far each shares a prefix with the next, for grouping."""

    order: list[int]
    reach: list[int]  # reach[i]: tokens order[i] and order[i + 1] share (within both rows' room)
    shared: int
    min_shared: int
    most: int  # rows per group at most

    def best(self, lo: int, hi: int) -> tuple[list[Group], int]:
        """The grouping of sorted rows lo..hi that computes the fewest prefix tokens, and how many
        it saves: the whole span as one group on the prefix it shares, or the span cut where that
        prefix ends (each part grouped on its own longer prefix), whichever saves more."""
        if lo == hi:
            return [Group(self.shared, (self.order[lo],))], 0
        common = min(self.reach[lo:hi])
        parts, saved = [], 0
        start = lo
        for i in range(lo, hi + 1):
            if i == hi or self.reach[i] == common:
                groups, part_saved = self.best(start, i)
                parts, saved, start = parts + groups, saved + part_saved, i + 1
        rows = tuple(self.order[lo : hi + 1])
        chunks = [rows[i : i + self.most] for i in range(0, len(rows), self.most)]
        whole = sum(len(c) - 1 for c in chunks) * (common - self.shared)
        if common - self.shared < self.min_shared or saved >= whole:
            return parts, saved
        return [Group(common, c) for c in chunks], whole


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


def prefix_cache_keyword(model: Any) -> str | None:
    """The cache keyword of a model whose rows may share a prefix's key/value cache, or None: no
    cache keyword, a model that must see every prompt whole (`prefix_reuse_safe = False`, e.g.
    steering each call's last token), or peft's own prompt-learning forward (it prepends its
    virtual tokens to every input)."""
    if prompt_learning(model) or not getattr(model, "prefix_reuse_safe", True):
        return None
    return cache_keyword(model)


def prompt_learning(model: Any) -> bool:
    """True for a peft model with virtual tokens (peft drops position_ids with a warning)."""
    config = getattr(model, "active_peft_config", None)
    return bool(getattr(config, "is_prompt_learning", False))


def _wrapped(model: Any) -> Any:
    """The model a wrapper runs (peft's base model, our wrappers' `base`), or None."""
    if "get_base_model" in dir(type(model)):
        return model.get_base_model()
    return model.__dict__.get("_modules", {}).get("base")


class PrefixRunner:
    """Runs the batches of a plan on one causal model: the global prefix's cache is computed once,
    and each batch is one forward in which every group is one packed sequence (see `pack`)."""

    def __init__(self, model: Any, pad: int, device: Any, keyword: str, mask_dtype: Any):
        self.model, self.pad, self.device, self.keyword = model, pad, device, keyword
        self.mask_dtype = mask_dtype  # a float dtype: additive mask (fastest on CPU); bool: boolean
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
        cache = _empty_cache(self.model)
        self.model(input_ids=ids, attention_mask=mask, position_ids=_positions(mask),
                   use_cache=True, logits_to_keep=1, **{self.keyword: cache})  # fmt: skip
        self.shared_kv = _tensors(cache)
        self.shared_len = cache.get_seq_length()

    def tail_logits(
        self, contexts: Sequence[Sequence[int]], groups: list[Group], keep: int
    ) -> torch.Tensor:
        """[rows, keep, vocab] logits of the last `keep` positions of each row of the batch, rows in
        group order: one forward over the groups' packed sequences, after the global prefix."""
        packed = pack(contexts, groups, self.shared_tokens, self.shared_len, keep, self.pad)
        cache = self._shared_cache(len(groups))
        out = self.model(
            input_ids=packed.ids.to(self.device),
            attention_mask=self._mask(packed),
            position_ids=packed.positions.to(self.device),
            use_cache=True,
            logits_to_keep=packed.reads.to(self.device),
            **{self.keyword: cache},
        )
        logits = out.logits  # [groups, slots * keep, vocab]
        slots = [(g, j) for g, group in enumerate(groups) for j in range(len(group.rows))]
        return torch.stack([logits[g, j * keep : (j + 1) * keep] for g, j in slots])

    def _mask(self, packed: Packed) -> torch.Tensor:
        """[groups, 1, length, cached + length] attention mask: real tokens see the global prefix."""
        groups, length = packed.real.shape
        cached = packed.real[:, :, None].expand(groups, length, self.shared_len)
        mask = torch.cat([cached, packed.allowed], dim=2)[:, None].to(self.device)
        if self.mask_dtype == torch.bool:
            return mask
        blocked = torch.finfo(self.mask_dtype).min
        additive = torch.zeros(mask.shape, dtype=self.mask_dtype, device=self.device)
        return additive.masked_fill_(~mask, blocked)

    def _shared_cache(self, batch: int) -> Any:
        """A fresh DynamicCache holding the global prefix for each of `batch` rows, as broadcast
        views: the cache's first update concatenates them with the batch's keys anyway, so copying
        them first would only add a pass over the prefix (long for k-shot prefixes); empty when
        there is no global prefix."""
        from transformers import DynamicCache

        if self.shared_kv is None:
            return _empty_cache(self.model)
        data = [
            (k.expand(batch, -1, -1, -1), v.expand(batch, -1, -1, -1)) for k, v in self.shared_kv
        ]
        return DynamicCache(ddp_cache_data=data, config=self.model.config)


def _empty_cache(model: Any) -> Any:
    """A fresh, empty DynamicCache for `model`."""
    from transformers import DynamicCache

    return DynamicCache(config=model.config)


@dataclass(frozen=True)
class Packed:
    """A batch's groups as packed sequences: ids, positions, which packed token may attend to which,
    and the packed places whose next-token distributions are read (the same for every group)."""

    ids: torch.Tensor  # [groups, length]
    positions: torch.Tensor  # [groups, length] positions in the unsplit rows
    allowed: torch.Tensor  # [groups, length, length] bool
    real: torch.Tensor  # [groups, length] bool: a token, not padding
    reads: torch.Tensor  # [slots * keep]: slot j's last `keep` places at j * keep, ...


def pack(
    contexts: Sequence[Sequence[int]],
    groups: list[Group],
    shared_tokens: int,
    shared_len: int,
    keep: int,
    pad: int = 0,
) -> Packed:
    """Each group as one sequence (tree attention): its own prefix beyond the global one, then each
    row's suffix in a slot of its own. Slot j's suffixes end at the same place in every group (left
    padding in the slot), so one list of places reads every row. A token attends to the global prefix,
    to the group prefix and, causally, to its own slot: exactly what it sees in the unsplit row."""
    prefixes = [list(contexts[g.rows[0]][shared_tokens : g.prefix]) for g in groups]
    suffixes = [[list(contexts[r][g.prefix :]) for r in g.rows] for g in groups]
    head = max(len(p) for p in prefixes)
    widths = [
        max(len(s[j]) for s in suffixes if j < len(s)) for j in range(max(len(s) for s in suffixes))
    ]
    length = head + sum(widths)
    ids = torch.full((len(groups), length), pad, dtype=torch.long)
    positions = torch.zeros((len(groups), length), dtype=torch.long)
    segment = torch.full((len(groups), length), -1, dtype=torch.long)  # -1 padding, 0 prefix, j+1
    for g, (prefix, rows) in enumerate(zip(prefixes, suffixes, strict=True)):
        _place(ids, positions, segment, g, head - len(prefix), prefix, shared_len, 0)
        end = head
        for j, suffix in enumerate(rows):
            end += widths[j]
            first = shared_len + len(prefix)
            _place(ids, positions, segment, g, end - len(suffix), suffix, first, j + 1)
    query, key = segment[:, :, None], segment[:, None, :]
    causal = torch.ones((length, length), dtype=torch.bool).tril()
    allowed = causal & (key >= 0) & ((key == 0) | (key == query))
    allowed |= torch.eye(length, dtype=torch.bool) & (
        query < 0
    )  # padding sees itself: no empty row
    ends = torch.tensor(widths).cumsum(0) + head - 1
    reads = (ends[:, None] - torch.arange(keep - 1, -1, -1)[None, :]).reshape(-1).clamp(min=0)
    return Packed(ids, positions, allowed, segment >= 0, reads)


def _place(ids, positions, segment, g: int, at: int, tokens: list[int], first: int, seg: int):
    """Write `tokens` into packed row g from place `at`, at positions from `first`, in segment `seg`."""
    if not tokens:
        return
    span = slice(at, at + len(tokens))
    ids[g, span] = torch.tensor(tokens, dtype=torch.long)
    positions[g, span] = torch.arange(first, first + len(tokens))
    segment[g, span] = seg


def _tensors(cache: Any) -> list[tuple[Any, Any]]:
    """The (keys, values) of every layer of a DynamicCache."""
    return [(layer.keys, layer.values) for layer in cache.layers]


def _positions(mask: Any) -> Any:
    """Position ids counting only real tokens from each row's start."""
    return (mask.cumsum(dim=1) - 1).clamp(min=0)
