"""Bounds checked before scoring: prompt length against the model's context, and a memory estimate.

Policy: **refuse**, never truncate. A prompt longer than the model's context would be scored on text
the model cannot see whole (and for a causal model, on positions it was never trained on), and a
batch whose activations cannot fit would end in an allocation failure minutes in. Both stop the run
with a UserError naming the longest prompt and the fixes.

The context is `model.max_length` when set (the only bound for T5's relative positions, 512 by
default), else the smaller of `max_position_embeddings` and the tokenizer's `model_max_length`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from sycophancy.errors import UserError

T5_DEFAULT = 512  # relative positions have no hard bound; T5 was trained on 512 input tokens
HEADROOM = 0.8  # refuse when one batch would take more than this share of the free memory
SHOWN = 120  # characters of the longest prompt quoted in the message
UNSET_LENGTH = (
    10**12
)  # a tokenizer model_max_length this large means "not set" (transformers: 1e30)


def context_limit(lm) -> int | None:
    """The most input tokens the model takes; None when nothing bounds it."""
    config = getattr(lm.model, "config", None)
    tokenizer_max = getattr(lm.tokenizer, "model_max_length", None)
    if tokenizer_max is not None and tokenizer_max >= UNSET_LENGTH:
        tokenizer_max = None  # transformers' "not set" sentinel (1e30)
    limits = [
        int(v)
        for v in (getattr(config, "max_position_embeddings", None), tokenizer_max)
        if v is not None
    ]
    if limits:
        return min(limits)
    return T5_DEFAULT if lm.family == "seq2seq" else None


def set_max_length(lm, max_length: int | None):
    """Apply `model.max_length` (if set) as the tokenizer's model_max_length; returns `lm`."""
    if max_length is not None:
        lm.tokenizer.model_max_length = int(max_length)
    return lm


def check_prompts(lm, prompts: Sequence[str], batch_size: int, new_tokens: int = 0) -> None:
    """Refuse prompts longer than the model's context, or a batch the free memory cannot hold.

    UTF-8 bytes bound byte-level BPE and SentencePiece token counts from above (plus a few special
    tokens), so prompts are only tokenised when their length in bytes could break a bound.
    """
    if not prompts:
        return
    bound = max(len(p.encode("utf-8")) for p in prompts) + 16 + new_tokens
    limit = context_limit(lm)
    free = free_memory(lm.model)
    fits = free is None or batch_bytes(lm, batch_size, bound) <= HEADROOM * free
    if (limit is None or bound <= limit) and fits:
        return
    lengths = [len(ids) for ids in lm.tokenizer(list(prompts))["input_ids"]]
    longest = max(range(len(lengths)), key=lengths.__getitem__)
    tokens = lengths[longest] + new_tokens
    shown = prompts[longest][:SHOWN].replace("\n", " ")
    over = sum(n + new_tokens > limit for n in lengths) if limit is not None else 0
    if over:
        raise UserError(
            f"{over} of {len(prompts)} prompts are longer than the {limit} tokens model "
            f"{lm.name!r} takes; the longest (prompt {longest}, {tokens} tokens"
            f"{' with the reply' if new_tokens else ''}) starts {shown!r}. Prompts are never cut "
            "(the model would answer text it cannot see whole): drop or shorten the long texts in "
            "the data file, lower mitigation.k (each in-context example lengthens every prompt), "
            "or use a model with a longer context (model.max_length for T5's relative positions)."
        )
    need = batch_bytes(lm, batch_size, tokens)
    if free is not None and need > HEADROOM * free:
        raise UserError(
            f"Scoring a batch of {batch_size} prompts of up to {tokens} tokens (the longest, prompt "
            f"{longest}, starts {shown!r}) needs about {_size(need)}, more than "
            f"{HEADROOM:.0%} of the {_size(free)} free. Lower probe.batch_size (e.g. "
            f"probe.batch_size={max(1, int(batch_size * HEADROOM * free / need))}), shorten the "
            "texts, or lower mitigation.k."
        )


def _size(n: float) -> str:
    """Bytes as GiB, or MiB below one GiB."""
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def batch_bytes(lm, batch_size: int, tokens: int) -> int:
    """Rough peak activation bytes of one forward pass over `batch_size` rows of `tokens` tokens:
    hidden states and MLP activations per layer, plus the attention matrix when it is
    materialised (eager attention, T5's position bias)."""
    config = lm.model.config
    hidden = getattr(config, "hidden_size", None) or getattr(config, "d_model", 512)
    inner = getattr(config, "intermediate_size", None) or getattr(config, "d_ff", 4 * hidden)
    heads = getattr(config, "num_attention_heads", None) or getattr(config, "num_heads", 8)
    width = _dtype_bytes(lm.model)
    linear = batch_size * tokens * (4 * hidden + 2 * inner) * width
    eager = getattr(config, "_attn_implementation", "eager") == "eager" or lm.family == "seq2seq"
    attention = batch_size * heads * tokens * tokens * 4 * (2 if eager else 0)
    return int(linear + attention)


def _dtype_bytes(model) -> int:
    """Bytes per element of the model's weights."""
    try:
        return next(model.parameters()).element_size()
    except (StopIteration, AttributeError):
        return 4


def free_memory(model) -> int | None:
    """Free bytes where the model runs: the GPU's free memory, or the machine's available RAM
    (/proc/meminfo); None when unknown."""
    try:
        device = next(model.parameters()).device
    except (StopIteration, AttributeError):
        return None
    if device.type == "cuda":
        import torch

        return int(torch.cuda.mem_get_info(device)[0])
    if device.type == "cpu" and os.path.exists("/proc/meminfo"):
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    return None
