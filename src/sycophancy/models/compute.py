"""Steering PyTorch's CPU kernels around slow paths that scoring and training meet, and picking the
CPU attention kernel scoring uses."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from sycophancy.errors import UserError


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


# scoring's CPU attention: auto (the default), grouped or fused
CPU_ATTENTION = "SYCOPHANCY_CPU_ATTENTION"


def cpu_attention_setting() -> str:
    """SYCOPHANCY_CPU_ATTENTION as `auto`, `grouped` or `fused` (unset: `auto`); any other value is
    refused with the values it takes."""
    chosen = os.environ.get(CPU_ATTENTION, "auto").strip().lower() or "auto"
    if chosen not in ("auto", "grouped", "fused"):
        raise UserError(
            f"{CPU_ATTENTION}={os.environ[CPU_ATTENTION]!r} is not a CPU attention setting. Set it "
            "to 'grouped' (two batched matmuls), 'fused' (SDPA's fused kernel) or 'auto' (fused "
            "for bf16 on CPUs with AMX, grouped otherwise), or unset it."
        )
    return chosen


def scoring_attention_kind(dtype: torch.dtype) -> str:
    """The CPU scoring attention for a model computing in `dtype`: `fused` (SDPA's fused kernel on
    grouped heads) for bf16 on CPUs with AMX tiles, where that kernel runs its matmuls on them;
    `grouped` (two batched matmuls) elsewhere: without AMX, a few dozen queries a row over ~100
    cached positions run ~3x slower in the fused kernel. The environment variable
    SYCOPHANCY_CPU_ATTENTION=grouped|fused overrides the choice; under autograd (training, where the
    fused kernel's backward pass was ~15x its forward) it is always `grouped`."""
    chosen = cpu_attention_setting()
    if torch.is_grad_enabled() or not _sdpa_takes_groups():
        return "grouped"
    if chosen != "auto":
        return chosen
    return "fused" if dtype == torch.bfloat16 and amx_tiles() else "grouped"


def amx_tiles() -> bool:
    """Whether this CPU has AMX tiles that torch uses (False where torch cannot tell)."""
    return bool(getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)())


def _sdpa_takes_groups() -> bool:
    """Whether this torch's scaled_dot_product_attention has `enable_gqa` (2.5 and later)."""
    major, minor = (int(part) for part in torch.__version__.split(".")[:2])
    return (major, minor) >= (2, 5)


@contextmanager
def scoring_attention(device: Any, dtype: torch.dtype = torch.float32) -> Iterator[None]:
    """On CPU, while inside: attention of transformers' `sdpa` models through `models/attention.py`,
    as `scoring_attention_kind(dtype)` picks. Elsewhere: unchanged."""
    if torch.device(device).type != "cpu":
        yield
        return
    from sycophancy.models.attention import fused_grouped_attention, grouped_attention, grouped_sdpa

    kind = scoring_attention_kind(dtype)
    with grouped_sdpa(fused_grouped_attention if kind == "fused" else grouped_attention):
        yield
