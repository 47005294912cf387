"""Tiny randomly initialised T5 and Llama models with a byte tokenizer, for tests and smoke runs."""

from __future__ import annotations

from typing import Any

import torch
from transformers import (
    ByT5Tokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    T5Config,
    T5ForConditionalGeneration,
)

from sycophancy.errors import UserError
from sycophancy.models.pretrained import FAMILIES

TINY_DEFAULTS = {"d_model": 64, "layers": 2, "heads": 2, "seed": 0}
TINY_CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def build_tiny(cfg: dict, dtype: torch.dtype = torch.float32) -> tuple[Any, Any]:
    """A randomly initialised tiny T5 or Llama with a ByT5 byte tokenizer, deterministic from seed."""
    family = cfg.get("family") or "causal"
    if family not in FAMILIES:
        raise UserError(f"model.family={family!r} is not one of {FAMILIES}; set it to one of them.")
    size = {**TINY_DEFAULTS, **(cfg.get("tiny") or {})}
    tokenizer = ByT5Tokenizer(model_max_length=4096)  # bytes: the context scoring/limits.py checks
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(size["seed"]))
        build = _tiny_t5 if family == "seq2seq" else _tiny_llama
        model = build(len(tokenizer), size, tokenizer.pad_token_id, tokenizer.eos_token_id)
    if family == "causal":
        tokenizer.chat_template = TINY_CHAT_TEMPLATE
    return model.to(dtype).eval(), tokenizer


def _tiny_t5(vocab: int, size: dict, pad: int, eos: int) -> Any:
    """Tiny T5ForConditionalGeneration."""
    d, heads = int(size["d_model"]), int(size["heads"])
    config = T5Config(
        vocab_size=vocab,
        d_model=d,
        d_kv=d // heads,
        d_ff=4 * d,
        num_layers=int(size["layers"]),
        num_heads=heads,
        pad_token_id=pad,
        eos_token_id=eos,
        decoder_start_token_id=pad,
    )
    return T5ForConditionalGeneration(config)


def _tiny_llama(vocab: int, size: dict, pad: int, eos: int) -> Any:
    """Tiny LlamaForCausalLM."""
    d, heads = int(size["d_model"]), int(size["heads"])
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=d,
        intermediate_size=4 * d,
        num_hidden_layers=int(size["layers"]),
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=4096,
        pad_token_id=pad,
        eos_token_id=eos,
        bos_token_id=None,
    )
    return LlamaForCausalLM(config)
