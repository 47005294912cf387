"""Batched answer scoring (log-prob of each option's first distinguishing token) and generation."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from sycophancy.errors import UserError
from sycophancy.models import LoadedModel


@dataclass(frozen=True)
class _Row:
    """One prompt ready for a forward pass: model input, decoder input and the k target tokens."""

    context: list[int]  # causal: whole input; seq2seq: encoder input
    decoder: list[int]  # seq2seq decoder input (start token + common option prefix); causal: []
    targets: list[int]  # the first distinguishing token of each option


def score_options(
    lm: LoadedModel,
    prompts: list[str],
    options: Sequence[Sequence[str]] | Sequence[str],
    batch_size: int = 16,
    progress: str | None = None,
) -> np.ndarray:
    """Log-softmax (full vocabulary) of each option's first distinguishing token: float32 [n, k]."""
    per_prompt = _broadcast_options(prompts, options)
    rows = _rows(lm, prompts, per_prompt)
    k = len(per_prompt[0]) if per_prompt else len(options)
    scores = np.zeros((len(rows), k), dtype=np.float32)
    with _inference(lm.model), _bar(len(rows), progress) as bar:
        for idx in _batches_by_length([len(r.context) for r in rows], batch_size):
            batch = [rows[i] for i in idx]
            scores[idx] = _score_batch(lm, batch)
            bar.update(len(idx))
    return scores


def generate(
    lm: LoadedModel,
    prompts: list[str],
    max_new_tokens: int = 16,
    batch_size: int = 8,
    progress: str | None = None,
) -> list[str]:
    """Greedy continuations of each prompt (new text only, surrounding whitespace stripped)."""
    contexts = prompt_ids(lm, prompts)
    texts = [""] * len(prompts)
    with _inference(lm.model), _bar(len(prompts), progress) as bar:
        for idx in _batches_by_length([len(c) for c in contexts], batch_size):
            batch = _generate_batch(lm, [contexts[i] for i in idx], max_new_tokens)
            for i, text in zip(idx, batch, strict=True):
                texts[i] = text
            bar.update(len(idx))
    return texts


def _broadcast_options(
    prompts: list[str], options: Sequence[Sequence[str]] | Sequence[str]
) -> list[list[str]]:
    """One option list per prompt; a flat list of strings applies to every prompt."""
    if options and all(isinstance(o, str) for o in options):
        options = [list(options)] * len(prompts)
    per_prompt = [list(o) for o in options]
    if len(per_prompt) != len(prompts):
        raise UserError(
            f"score_options got {len(prompts)} prompts but {len(per_prompt)} option lists; "
            "pass one option list per prompt (or one flat list shared by all prompts)."
        )
    sizes = {len(o) for o in per_prompt}
    if len(sizes) > 1 or (sizes and min(sizes) < 2):
        raise UserError(
            f"Every prompt needs the same number (at least 2) of options; got sizes {sorted(sizes)}."
        )
    return per_prompt


def _rows(lm: LoadedModel, prompts: list[str], options: list[list[str]]) -> list[_Row]:
    """Tokenised rows for every prompt."""
    contexts = prompt_ids(lm, prompts)
    if lm.family == "seq2seq":
        start = _decoder_start(lm.model)
        return [
            _seq2seq_row(lm, c, p, o, start)
            for c, p, o in zip(contexts, prompts, options, strict=True)
        ]
    return [_causal_row(lm, c, p, o) for c, p, o in zip(contexts, prompts, options, strict=True)]


def _causal_row(lm: LoadedModel, context: list[int], prompt: str, options: list[str]) -> _Row:
    """Prompt tokens plus the options' common prefix; options tokenised as they follow the prompt."""
    plain = encode(lm.tokenizer, prompt)
    tails = [tail(lm.tokenizer, plain, prompt, option) for option in options]
    prefix, targets = _split_common_prefix(tails, options, prompt)
    return _Row(context + prefix, [], targets)


def _seq2seq_row(
    lm: LoadedModel, context: list[int], prompt: str, options: list[str], start: int
) -> _Row:
    """Encoder tokens; decoder gets the start token plus the options' common prefix."""
    tokenised = [encode(lm.tokenizer, o) for o in options]
    prefix, targets = _split_common_prefix(tokenised, options, prompt)
    return _Row(context, [start] + prefix, targets)


def encode(tok: Any, text: str) -> list[int]:
    """Token ids of `text` without special tokens."""
    return tok(text, add_special_tokens=False)["input_ids"]


def prompt_ids(lm: LoadedModel, prompts: list[str]) -> list[list[int]]:
    """Model input ids per prompt: causal gets BOS only if the tokenizer adds one and it is absent."""
    if lm.family == "seq2seq":
        return [lm.tokenizer(p, add_special_tokens=True)["input_ids"] for p in prompts]
    bos = _added_bos(lm.tokenizer)
    ids = [encode(lm.tokenizer, p) for p in prompts]
    return [[bos] + i if bos is not None and i[:1] != [bos] else i for i in ids]


def _added_bos(tok: Any) -> int | None:
    """The BOS id the tokenizer puts in front of text by itself, or None."""
    bos = getattr(tok, "bos_token_id", None)
    if bos is None:
        return None
    ids = tok("a", add_special_tokens=True)["input_ids"]
    return bos if ids[:1] == [bos] else None


def tail(tok: Any, prompt_ids: list[int], prompt: str, option: str) -> list[int]:
    """Tokens of `option` as they follow `prompt` (falls back to the option alone on a merge)."""
    full = encode(tok, prompt + option)
    if full[: len(prompt_ids)] == prompt_ids and len(full) > len(prompt_ids):
        return full[len(prompt_ids) :]
    return encode(tok, option)


def _split_common_prefix(
    tokenised: list[list[int]], options: list[str], prompt: str
) -> tuple[list[int], list[int]]:
    """The options' shared leading tokens and each option's first token after them."""
    n = 0
    while all(len(t) > n for t in tokenised) and len({t[n] for t in tokenised}) == 1:
        n += 1
    if any(len(t) <= n for t in tokenised):
        raise UserError(
            f"Options {options} cannot be told apart by one token: one is empty, equal to or a "
            f"prefix of another once tokenised (prompt starting {prompt[:60]!r}). Use options "
            "that differ before either ends, e.g. 'A'/'B' or 'positive'/'negative'."
        )
    return tokenised[0][:n], [t[n] for t in tokenised]


def _decoder_start(model: Any) -> int:
    """The decoder start token of an encoder-decoder model."""
    config = model.config
    start = getattr(config, "decoder_start_token_id", None)
    return int(start if start is not None else config.pad_token_id)


def pad_id(tok: Any) -> int:
    """The tokenizer's pad id, falling back to EOS (the mask hides it either way)."""
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    return int(pad if pad is not None else 0)


def _pad(seqs: list[list[int]], pad: int, left: bool, device: Any) -> tuple[Any, Any]:
    """Pad id lists to a [b, t] LongTensor plus its attention mask."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        span = slice(width - len(s), width) if left else slice(0, len(s))
        ids[i, span] = torch.tensor(s, dtype=torch.long)
        mask[i, span] = 1
    return ids.to(device), mask.to(device)


def _device(model: Any) -> Any:
    """Device of the model's first parameter."""
    return next(model.parameters()).device


def _score_batch(lm: LoadedModel, batch: list[_Row]) -> np.ndarray:
    """One forward pass: log-probs of each row's target tokens at the scored position."""
    logits = _next_token_logits(lm, batch)
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    targets = torch.tensor([r.targets for r in batch], device=logprobs.device)
    return logprobs.gather(1, targets).cpu().numpy()


def _next_token_logits(lm: LoadedModel, batch: list[_Row]) -> Any:
    """[b, vocab] logits for the next token after each row's context (and decoder prefix)."""
    device, pad = _device(lm.model), pad_id(lm.tokenizer)
    if lm.family == "seq2seq":
        ids, mask = _pad([r.context for r in batch], pad, left=False, device=device)
        dec, dec_mask = _pad([r.decoder for r in batch], pad, left=False, device=device)
        out = lm.model(input_ids=ids, attention_mask=mask, decoder_input_ids=dec)
        last = dec_mask.sum(dim=1) - 1
        return out.logits[torch.arange(len(batch), device=device), last]
    ids, mask = _pad([r.context for r in batch], pad, left=True, device=device)
    extra = {} if _prompt_learning(lm.model) else {"position_ids": _positions(mask)}
    out = lm.model(input_ids=ids, attention_mask=mask, logits_to_keep=1, **extra)
    return out.logits[:, -1]


def _positions(mask: Any) -> Any:
    """Position ids that start at 0 on each row's first real token (left padding)."""
    return (mask.cumsum(dim=1) - 1).clamp(min=0)


def _prompt_learning(model: Any) -> bool:
    """True for a peft model with virtual tokens (peft drops position_ids with a warning)."""
    config = getattr(model, "active_peft_config", None)
    return bool(getattr(config, "is_prompt_learning", False))


def _generate_batch(lm: LoadedModel, contexts: list[list[int]], max_new_tokens: int) -> list[str]:
    """Greedy generation for one batch; returns the decoded new text of each row."""
    pad = pad_id(lm.tokenizer)
    causal = lm.family == "causal"
    ids, mask = _pad(contexts, pad, left=causal, device=_device(lm.model))
    out = lm.model.generate(
        input_ids=ids,
        attention_mask=mask,
        max_new_tokens=max_new_tokens,
        do_sample=False,
        num_beams=1,
        pad_token_id=pad,
    )
    new = out[:, ids.shape[1] :] if causal else out
    return [t.strip() for t in lm.tokenizer.batch_decode(new, skip_special_tokens=True)]


def _batches_by_length(lengths: list[int], batch_size: int) -> Iterator[list[int]]:
    """Index batches, longest first, so each batch pads little and memory peaks early."""
    if batch_size < 1:
        raise UserError(f"batch_size={batch_size} must be at least 1.")
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


@contextmanager
def _inference(model: Any) -> Iterator[None]:
    """Run in eval mode under torch.inference_mode, restoring every submodule's mode after."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        for module, training in modes:
            module.training = training


@contextmanager
def _bar(total: int, label: str | None) -> Iterator[Any]:
    """A tqdm bar labelled `label`, silent when label is None."""
    bar = tqdm(total=total, desc=label, disable=label is None, unit="prompt")
    try:
        yield bar
    finally:
        bar.close()
