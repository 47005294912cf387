"""Shared-prefix reuse for causal scoring: plan which rows share which prefix, and compute each
shared prefix once instead of recomputing every row from its first token.

Rows (token id lists) are planned on three levels: the prefix every row shares (chat template,
system prompt) is computed once per call and kept as a key/value cache; rows sharing a longer prefix
(the three conditions of one example share its biography, an `icl` example's conditions share its
k-shot block) form a group, grouped on the longest prefix they share; each row then computes only
its own suffix. A batch is two forward passes: the groups' own prefixes after the global cache,
then every row's suffix after its group's cache (left-padded, so the read positions line up), each
token at the unsplit row's position and seeing exactly what it sees in the unsplit row: a row's
scores equal the full recompute's up to float rounding. Packing each group into one sequence under a
tree mask instead (one forward a batch) computed ~4x the attention scores it used, and CPU
attention on it cost a third of the time.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch

from sycophancy.models.compute import compute_dtype, scoring_attention

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
    """Runs the batches of a plan on one causal model: the global prefix's cache is computed once;
    each batch then takes two forwards, one over its groups' own prefixes (after the global cache)
    and one over its rows' suffixes, each row after the cache of its group."""

    def __init__(self, model: Any, pad: int, device: Any, keyword: str, mask_dtype: Any):
        self.model, self.pad, self.device, self.keyword = model, pad, device, keyword
        self.mask_dtype = mask_dtype  # a float dtype: additive mask (fastest on CPU); bool: boolean
        self.dtype = compute_dtype(model)  # picks the CPU attention (models/compute.py)
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
        with scoring_attention(self.device, self.dtype):
            self.model(input_ids=ids, attention_mask=mask, position_ids=_positions(mask),
                       use_cache=True, logits_to_keep=1, **{self.keyword: cache})  # fmt: skip
        self.shared_kv = _tensors(cache)
        self.shared_len = cache.get_seq_length()

    def tail_logits(
        self, contexts: Sequence[Sequence[int]], groups: list[Group], keep: int
    ) -> torch.Tensor:
        """[rows, keep, vocab] logits of the last `keep` positions of each row of the batch, rows in
        group order: the groups' own prefixes in one forward, then every row's suffix in another."""
        own = [list(contexts[g.rows[0]][self.shared_tokens : g.prefix]) for g in groups]
        suffixes = [list(contexts[r][g.prefix :]) for g in groups for r in g.rows]
        firsts = [self.shared_len + len(own[i]) for i, g in enumerate(groups) for _ in g.rows]
        rows = left_padded(suffixes, firsts, self.pad)
        if any(own):
            kv, seen = self._group_caches(own)
            owner = torch.tensor([i for i, g in enumerate(groups) for _ in g.rows])
            kv = [(k.index_select(0, owner.to(k.device)), v.index_select(0, owner.to(v.device)))
                  for k, v in kv]  # fmt: skip
            seen = seen[owner]
        else:  # the global prefix alone
            kv = self._shared_data(len(suffixes))
            seen = torch.ones((len(suffixes), self.shared_len), dtype=torch.bool)
        return self._forward(rows, seen, kv, keep).logits[:, -keep:]

    def _group_caches(self, own: list[list[int]]) -> tuple[list[tuple[Any, Any]], torch.Tensor]:
        """Each group's key/value cache (global prefix, then its own prefix, one forward for all)
        and which of its positions hold tokens: [groups, cached] bool (shorter ones are padded)."""
        groups = len(own)
        global_part = torch.ones((groups, self.shared_len), dtype=torch.bool)
        prefix = left_padded(own, [self.shared_len] * groups, self.pad)
        cache = self._forward(prefix, global_part, self._shared_data(groups), 1).cache
        return _tensors(cache), torch.cat([global_part, prefix.real], dim=1)

    def _forward(self, rows: Padded, seen: torch.Tensor, kv: list, keep: int) -> Any:
        """The model on left-padded rows after a cache: a row's tokens see the cached positions
        `seen` marks and, causally, its own tokens. Returns logits and the cache, extended."""
        cache = _cache(self.model, kv)
        with scoring_attention(self.device, self.dtype):
            out = self.model(
                input_ids=rows.ids.to(self.device),
                attention_mask=self._mask(rows, seen),
                position_ids=rows.positions.to(self.device),
                use_cache=True,
                logits_to_keep=keep,
                **{self.keyword: cache},
            )
        return _Out(out.logits, cache)

    def _mask(self, rows: Padded, seen: torch.Tensor) -> torch.Tensor:
        """[rows, 1, width, cached + width] attention mask: real tokens see the cached positions
        `seen` marks; padding sees only itself."""
        n, width = rows.real.shape
        cached = seen[:, None, :].expand(n, width, seen.shape[1]) & rows.real[:, :, None]
        mask = torch.cat([cached, rows.allowed], dim=2)[:, None].to(self.device)
        if self.mask_dtype == torch.bool:
            return mask
        blocked = torch.finfo(self.mask_dtype).min
        additive = torch.zeros(mask.shape, dtype=self.mask_dtype, device=self.device)
        return additive.masked_fill_(~mask, blocked)

    def _shared_data(self, batch: int) -> list[tuple[Any, Any]]:
        """The global prefix's keys and values for each of `batch` rows, as broadcast views: the
        cache's first update concatenates them with the batch's keys anyway, so copying them first
        would only add a pass over the prefix (long for k-shot prefixes); [] without one."""
        if self.shared_kv is None:
            return []
        return [
            (k.expand(batch, -1, -1, -1), v.expand(batch, -1, -1, -1)) for k, v in self.shared_kv
        ]


class _Out(NamedTuple):
    """A forward's logits and the key/value cache it extended."""

    logits: torch.Tensor
    cache: Any


def _cache(model: Any, data: list[tuple[Any, Any]]) -> Any:
    """A fresh DynamicCache for `model` holding `data` (keys, values per layer); empty for []."""
    from transformers import DynamicCache

    if not data:
        return _empty_cache(model)
    return DynamicCache(ddp_cache_data=data, config=model.config)


def _empty_cache(model: Any) -> Any:
    """A fresh, empty DynamicCache for `model`."""
    from transformers import DynamicCache

    return DynamicCache(config=model.config)


@dataclass(frozen=True)
class Padded:
    """Token lists left-padded to one width (so every row's last tokens share their places)."""

    ids: torch.Tensor  # [rows, width]
    positions: torch.Tensor  # [rows, width] positions in the unsplit rows
    real: torch.Tensor  # [rows, width] bool: a token, not padding
    allowed: torch.Tensor  # [rows, width, width] bool: causal among a row's tokens


def left_padded(seqs: Sequence[Sequence[int]], firsts: Sequence[int], pad: int = 0) -> Padded:
    """`seqs` left-padded to the longest, row i at positions from `firsts[i]`; a token may attend
    to the tokens of its own row up to itself, padding only to itself (no empty softmax row)."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    positions = torch.zeros((len(seqs), width), dtype=torch.long)
    real = torch.zeros((len(seqs), width), dtype=torch.bool)
    for i, (tokens, first) in enumerate(zip(seqs, firsts, strict=True)):
        if tokens:
            ids[i, width - len(tokens) :] = torch.tensor(list(tokens), dtype=torch.long)
            positions[i, width - len(tokens) :] = torch.arange(first, first + len(tokens))
            real[i, width - len(tokens) :] = True
    causal = torch.ones((width, width), dtype=torch.bool).tril()
    allowed = causal & real[:, None, :]
    allowed |= torch.eye(width, dtype=torch.bool) & ~real[:, :, None]
    return Padded(ids, positions, real, allowed)


def _tensors(cache: Any) -> list[tuple[Any, Any]]:
    """The (keys, values) of every layer of a DynamicCache."""
    return [(layer.keys, layer.values) for layer in cache.layers]


def _positions(mask: Any) -> Any:
    """Position ids counting only real tokens from each row's start."""
    return (mask.cumsum(dim=1) - 1).clamp(min=0)
