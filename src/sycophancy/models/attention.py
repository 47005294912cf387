"""Attention for CPU training steps: eager math with grouped-query heads folded into the query rows.

transformers' `sdpa` path repeats every key/value head for each query head it serves (a copy of the
keys and values per layer, and a sum over the copies in the backward pass) whenever a mask is given,
and SDPA's CPU math kernel adds passes of its own over the scores to find fully masked rows. Folding
the query heads that share a key/value head into one matrix of query rows needs neither: two batched
matmuls and an fp32 softmax (transformers' `eager` numerics) per layer. On SmolLM2 (9 query heads, 3
key/value heads) a prompt-tuning step runs ~1.2x faster, with gradients as close to fp32's.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from transformers.integrations.sdpa_attention import sdpa_attention_forward


def grouped_attention(
    module: Any,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers' attention-function contract ([b, heads, n, d] in, [b, n, heads, d] out) with
    the query heads of each key/value head as one block of rows; anything it does not cover (dropout,
    position bias, soft-capping, attention sinks, broadcast batches) goes to the `sdpa` function."""
    fallback = (
        dropout
        or any(kwargs.get(name) is not None for name in ("position_bias", "softcap", "s_aux"))
        or key.shape[0] != query.shape[0]
        or query.shape[1] % key.shape[1]
    )
    if fallback:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                     is_causal=is_causal, **kwargs)  # fmt: skip
    batch, heads, n, dim = query.shape
    groups = key.shape[1]
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    if attention_mask is None and n > 1 and causal:
        key, value = key[:, :, :n], value[:, :, :n]  # SDPA's is_causal aligns to the upper left
        attention_mask = torch.ones(n, n, dtype=torch.bool, device=query.device).tril()
    rows = query.reshape(batch, groups, heads // groups * n, dim)
    scores = torch.matmul(rows, key.transpose(2, 3)).view(batch, heads, n, -1)
    scores = scores * (scaling if scaling is not None else dim**-0.5)
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
        else:
            scores = scores + attention_mask
    probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(value.dtype)
    out = torch.matmul(probs.view(batch, groups, -1, probs.shape[-1]), value)
    return out.view(batch, heads, n, dim).transpose(1, 2).contiguous(), None


@contextmanager
def grouped_sdpa() -> Iterator[None]:
    """Models that attend through transformers' `sdpa` function use `grouped_attention` while
    inside (the library-wide registration is restored on exit)."""
    from transformers import AttentionInterface

    registered = AttentionInterface._global_mapping.get("sdpa", sdpa_attention_forward)
    AttentionInterface.register("sdpa", grouped_attention)
    try:
        yield
    finally:
        AttentionInterface.register("sdpa", registered)
