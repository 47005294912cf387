"""Steering PyTorch's CPU kernels around two slow paths that scoring and training both meet."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch


def output_heads(model: Any) -> list[Any]:
    """The output projections (lm_head) of the model and of any model it wraps."""
    heads: dict[int, Any] = {}
    for module in model.modules():
        get = getattr(type(module), "get_output_embeddings", None)
        head = get(module) if callable(get) else None
        if isinstance(head, torch.nn.Module):
            heads[id(head)] = head
    return list(heads.values())


def compute_dtype(model: Any) -> torch.dtype:
    """The dtype the model computes in without autocast: its output head's weight dtype."""
    heads = output_heads(model)
    if heads and getattr(heads[0], "weight", None) is not None:
        return heads[0].weight.dtype
    return next(p.dtype for p in model.parameters() if p.is_floating_point())


@contextmanager
def contiguous_head_inputs(model: Any) -> Iterator[None]:
    """Hand every output head a contiguous input while inside: `logits_to_keep` gives it a strided
    slice, and a linear layer with frozen (requires_grad=False) bf16 weights on such a slice takes a
    batched-matmul path on CPU that copies the weight per row (~400x slower; peft freezes the base)."""
    hooks = [head.register_forward_pre_hook(_contiguous) for head in output_heads(model)]
    try:
        yield
    finally:
        for hook in hooks:
            hook.remove()


def _contiguous(_module: Any, args: tuple) -> tuple:
    """The positional tensor arguments in fresh row-major memory."""
    return tuple(_row_major(a) if isinstance(a, torch.Tensor) else a for a in args)


def _row_major(tensor: torch.Tensor) -> torch.Tensor:
    """`tensor` itself when its strides are row-major's, else a row-major copy. `contiguous()` is
    not enough: a one-row slice such as `hidden[:, -1:]` of a batch of one counts as contiguous but
    keeps its parent's batch stride, and matmul then takes the weight-copying batched path."""
    expected, step = [], 1
    for size in reversed(tensor.shape):
        expected.append(step)
        step *= size
    if list(tensor.stride()) == expected[::-1]:
        return tensor
    return torch.empty(tensor.shape, dtype=tensor.dtype, device=tensor.device).copy_(tensor)


@contextmanager
def training_attention(device: Any) -> Iterator[None]:
    """On CPU, while inside: attention through `models/attention.py`'s grouped eager attention
    (transformers' `sdpa` models) and otherwise SDPA's math kernel. The fused CPU flash-attention
    kernel's backward pass is ~15x its forward (a third of a prompt-tuning step on SmolLM2), and the
    math kernel copies every key/value head per query head and scans the scores for fully masked
    rows. Elsewhere: unchanged."""
    if torch.device(device).type != "cpu":
        yield
        return
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from sycophancy.models.attention import grouped_sdpa

    with sdpa_kernel([SDPBackend.MATH]), grouped_sdpa():
        yield


@contextmanager
def scoring_attention(device: Any) -> Iterator[None]:
    """On CPU, while inside: attention through `models/attention.py`'s grouped eager attention
    (transformers' `sdpa` models). Shared-prefix scoring attends a few dozen queries a row over a
    cache of ~100 positions, where the fused CPU flash kernel runs ~3x slower than two batched
    matmuls. Elsewhere: unchanged."""
    if torch.device(device).type != "cpu":
        yield
        return
    from sycophancy.models.attention import grouped_sdpa

    with grouped_sdpa():
        yield
