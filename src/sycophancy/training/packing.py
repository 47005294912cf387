"""Causal training batches on a shared prefix: the tokens every row of a batch starts with (chat
template, system prompt, and a soft prompt before them) computed once as a key/value cache, then
each row's own tokens after it. A SmolLM2 training row spends ~50 of its ~140 positions on that
prefix and ~15 on padding; the rows after the cache are padded only to the longest row's own part.
This is the scorer's layout (`scoring/prefixes.py`, one row per group), so each row's logits equal
its unpadded forward's up to float rounding, and gradients flow into the cache (a soft prompt's
gradient comes from every row through it). Packing all rows of a batch into one sequence instead
was slower: its attention over ~600 positions outweighed the padding it saved."""

from __future__ import annotations

from typing import Any

import torch

from sycophancy.models.compute import compute_dtype
from sycophancy.scoring.prefixes import Group, PrefixRunner, common_length, prefix_cache_keyword


def rows_of(batch: dict) -> list[list[int]]:
    """Each row's real token ids (the padding the attention mask marks dropped)."""
    ids, mask = batch["input_ids"], batch["attention_mask"].bool()
    return [row[keep].tolist() for row, keep in zip(ids, mask, strict=True)]


def shared_length(rows: list[list[int]], keep: int) -> int:
    """Tokens every row starts with, leaving each row at least `keep` tokens of its own."""
    shared = min(common_length(rows[0], row) for row in rows)
    return max(0, min(shared, min(len(row) for row in rows) - keep))


def packed_tail_logits(model: Any, batch: dict, keep: int) -> torch.Tensor | None:
    """[rows, keep, vocab] logits of each row's last `keep` positions, computed after the cache of
    the prefix the rows share; None where the model cannot take that layout (no cache keyword, a
    steered model, peft's own prompt-learning forward) or a soft prompt has no shared token."""
    keyword = prefix_cache_keyword(model)
    if keyword is None:
        return None
    rows = rows_of(batch)
    shared = shared_length(rows, keep)
    if shared == 0 and getattr(model, "soft_prompt_first", False):
        return None  # the soft prompt's cache is built with the first shared tokens
    device = batch["input_ids"].device
    runner = PrefixRunner(model, 0, device, keyword, compute_dtype(model))  # padding is masked
    runner.start(rows[0][:shared])
    return runner.tail_logits(rows, [Group(shared, (i,)) for i in range(len(rows))], keep)
