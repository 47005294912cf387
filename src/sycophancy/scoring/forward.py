"""Batched answer scoring (joint log-prob of each option's distinguishing tokens) and generation."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
from tqdm.auto import tqdm

from sycophancy.errors import UserError
from sycophancy.models import LoadedModel
from sycophancy.models.compute import compute_dtype, contiguous_head_inputs
from sycophancy.scoring import parallel, prefixes
from sycophancy.scoring.limits import check_prompts
from sycophancy.scoring.prefixes import PrefixRunner


class _Read(NamedTuple):
    """One option token read from a row: its log-prob `back` positions before the row's last one."""

    option: int
    back: int  # 0: the distribution after the row's last token; 1: after the one before; ...
    token: int


@dataclass(frozen=True)
class _Row:
    """One forward pass input (prompt, shared prefix, one branch path) and the option tokens it reads."""

    prompt: int  # index of the prompt the reads score
    context: list[int]  # causal: whole input; seq2seq: encoder input
    decoder: list[int]  # seq2seq decoder input (start token + shared prefix + branch); causal: []
    reads: tuple[_Read, ...]


def score_options(
    lm: LoadedModel,
    prompts: list[str],
    options: Sequence[Sequence[str]] | Sequence[str],
    batch_size: int = 16,
    progress: str | None = None,
) -> np.ndarray:
    """Log-prob (full-vocabulary log-softmax) of each option: float32 [n, k].

    An option's score is the joint log-prob of its tokens after the prefix all options share, down to
    and including the first token where it parts from every other option: options that differ at
    their first token get that token's log-prob alone (one forward pass per prompt); options that
    share a first token with some others are told apart by teacher forcing along their branch.
    """
    if parallel.routed(lm):  # data-parallel share or bf16 autocast: parallel.py runs this call
        return parallel.score_options(score_options, lm, prompts, options, batch_size, progress)
    check_prompts(lm, prompts, batch_size)  # context length and memory, before any work
    per_prompt = _broadcast_options(prompts, options)
    rows = _rows(lm, prompts, per_prompt)
    k = len(per_prompt[0]) if per_prompt else len(options)
    scores = np.zeros((len(prompts), k), dtype=np.float32)
    runner = _prefix_runner(lm)
    with _inference(lm.model), _bar(len(rows), progress, "row") as bar:
        for batch, logprobs in _scored_batches(lm, rows, batch_size, runner):
            where = [(r.prompt, read.option) for r in batch for read in r.reads]
            np.add.at(scores, tuple(np.array(where).T), logprobs)
            bar.update(len(batch))
    return scores


def _scored_batches(
    lm: LoadedModel, rows: list[_Row], batch_size: int, runner: PrefixRunner | None
) -> Iterator[tuple[list[_Row], np.ndarray]]:
    """Each batch of rows with the log-prob of every read: on shared-prefix caches where the model
    allows it, else every row computed whole (longest first)."""
    if runner is None:
        for idx in _batches_by_length([len(r.context) for r in rows], batch_size):
            batch = [rows[i] for i in idx]
            yield batch, _read(batch, _tail_logits(lm, batch, _keep(batch)))
        return
    if batch_size < 1:
        raise UserError(f"batch_size={batch_size} must be at least 1.")
    contexts = [r.context for r in rows]
    tails = [1 + max(read.back for read in r.reads) for r in rows]
    layout = prefixes.plan(contexts, tails, batch_size)
    if layout.shared == 0 and getattr(lm.model, "soft_prompt_first", False):
        yield from _scored_batches(lm, rows, batch_size, None)  # no shared prefix to hold it
        return
    runner.start(contexts[0][: layout.shared] if rows else [])
    for groups in layout.batches:
        batch = [rows[i] for g in groups for i in g.rows]
        keep = _keep(batch)
        yield batch, _read(batch, runner.tail_logits(contexts, groups, keep))


def _prefix_runner(lm: LoadedModel) -> PrefixRunner | None:
    """A shared-prefix runner for a causal model that takes a key/value cache, else None (seq2seq
    encoders see the whole input at once; peft prompt tuning prepends its own virtual tokens)."""
    if lm.family != "causal" or not lm.reuse_prefixes:
        return None
    keyword = prefixes.prefix_cache_keyword(lm.model)
    if keyword is None:
        return None
    mask_dtype = torch.bool if lm.autocast else compute_dtype(lm.model)  # autocast: q/k/v not in it
    return PrefixRunner(lm.model, pad_id(lm.tokenizer), _device(lm.model), keyword, mask_dtype)


def generate(
    lm: LoadedModel,
    prompts: list[str],
    max_new_tokens: int = 16,
    batch_size: int = 8,
    progress: str | None = None,
) -> list[str]:
    """Greedy continuations of each prompt (new text only, surrounding whitespace stripped)."""
    if parallel.routed(lm):  # data-parallel share or bf16 autocast: parallel.py runs this call
        return parallel.generate(generate, lm, prompts, max_new_tokens, batch_size, progress)
    check_prompts(lm, prompts, batch_size, max_new_tokens)  # context length and memory
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
    """Tokenised rows for every prompt: one per branch its options need teacher-forced."""
    contexts = prompt_ids(lm, prompts)
    start = _decoder_start(lm.model) if lm.family == "seq2seq" else None
    rows = []
    tokenised = _option_tokens(lm, prompts, options)
    each = zip(contexts, prompts, options, tokenised, strict=True)
    for i, (context, prompt, opts, option_ids) in enumerate(each):
        shared, paths = _distinguishing_paths(option_ids, opts, prompt)
        for branch, reads in _branches(paths):
            if start is None:
                rows.append(_Row(i, context + shared + branch, [], reads))
            else:
                rows.append(_Row(i, context, [start] + shared + branch, reads))
    return rows


def _option_tokens(
    lm: LoadedModel, prompts: list[str], options: list[list[str]]
) -> list[list[list[int]]]:
    """Each prompt's options' token ids: causal as they follow the prompt, seq2seq as decoder text
    (tokenised in two batched calls, not one call per prompt and option)."""
    if lm.family == "seq2seq":
        alone = iter(_encode_all(lm.tokenizer, [o for opts in options for o in opts]))
        return [[next(alone) for _ in opts] for opts in options]
    plain = _encode_all(lm.tokenizer, prompts)
    joined = iter(
        _encode_all(
            lm.tokenizer, [p + o for p, opts in zip(prompts, options, strict=True) for o in opts]
        )
    )
    tokens = []
    for ids, opts in zip(plain, options, strict=True):
        tokens.append([_tail_of(lm.tokenizer, ids, next(joined), option) for option in opts])
    return tokens


def _encode_all(tok: Any, texts: list[str]) -> list[list[int]]:
    """Token ids of each text without special tokens (one batched call)."""
    return tok(texts, add_special_tokens=False)["input_ids"] if texts else []


def encode(tok: Any, text: str) -> list[int]:
    """Token ids of `text` without special tokens."""
    return tok(text, add_special_tokens=False)["input_ids"]


def prompt_ids(lm: LoadedModel, prompts: list[str]) -> list[list[int]]:
    """Model input ids per prompt: causal gets BOS only if the tokenizer adds one and it is absent."""
    if lm.family == "seq2seq":
        return [lm.tokenizer(p, add_special_tokens=True)["input_ids"] for p in prompts]
    bos = _added_bos(lm.tokenizer)
    ids = _encode_all(lm.tokenizer, prompts)
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
    return _tail_of(tok, prompt_ids, encode(tok, prompt + option), option)


def _tail_of(tok: Any, prompt_ids: list[int], full: list[int], option: str) -> list[int]:
    """The tokens `full` (prompt + option) has after `prompt_ids`, or the option alone on a merge."""
    if full[: len(prompt_ids)] == prompt_ids and len(full) > len(prompt_ids):
        return full[len(prompt_ids) :]
    return encode(tok, option)


def _distinguishing_paths(
    tokenised: list[list[int]], options: list[str], prompt: str
) -> tuple[list[int], list[list[int]]]:
    """The options' shared leading tokens and each option's tokens after them, down to and
    including the first token no other option has at that place (a prefix-tree walk)."""
    shared = _common_length(tokenised)
    paths = []
    for i, tokens in enumerate(tokenised):
        depth = 1 + max(_common_length([tokens, o]) for j, o in enumerate(tokenised) if j != i)
        if depth > len(tokens):
            raise UserError(
                f"Options {options} cannot be told apart: {options[i]!r} is empty, equal to or a "
                f"prefix of another option once tokenised (prompt starting {prompt[:60]!r}), so no "
                "token of it ever differs from that option. Use options that differ before either "
                "ends, e.g. 'A'/'B' or 'positive'/'negative'."
            )
        paths.append(tokens[shared:depth])
    return tokenised[0][:shared], paths


def _common_length(seqs: list[list[int]]) -> int:
    """Length of the longest prefix every sequence starts with."""
    n = 0
    while all(len(s) > n for s in seqs) and len({s[n] for s in seqs}) == 1:
        n += 1
    return n


def _branches(paths: list[list[int]]) -> list[tuple[list[int], tuple[_Read, ...]]]:
    """Fewest teacher-forced branches covering every option path, each with the reads it serves.

    A path's last token is read, not fed: options whose paths differ only there share a branch,
    and a branch that is a prefix of a longer one is read from the longer one's row.
    """
    branches: list[list[int]] = []
    for forced in sorted({tuple(p[:-1]) for p in paths}, key=lambda f: (-len(f), f)):
        if not any(tuple(b[: len(forced)]) == forced for b in branches):
            branches.append(list(forced))
    reads: list[list[_Read]] = [[] for _ in branches]
    for option, path in enumerate(paths):
        b = next(i for i, br in enumerate(branches) if br[: len(path) - 1] == path[:-1])
        reads[b] += [_Read(option, len(branches[b]) - step, t) for step, t in enumerate(path)]
    return [(branch, tuple(r)) for branch, r in zip(branches, reads, strict=True)]


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


def _keep(batch: list[_Row]) -> int:
    """How many last positions of each row the batch's reads need."""
    return 1 + max(read.back for r in batch for read in r.reads)


def _read(batch: list[_Row], logits: Any) -> np.ndarray:
    """The log-prob of every read of every row from [b, keep, vocab] logits, in row then read order."""
    keep = logits.shape[1]
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    rows = [i for i, r in enumerate(batch) for _ in r.reads]
    places = [keep - 1 - read.back for r in batch for read in r.reads]
    tokens = [read.token for r in batch for read in r.reads]
    return logprobs[rows, places, tokens].cpu().numpy()


def _tail_logits(lm: LoadedModel, batch: list[_Row], keep: int) -> Any:
    """[b, keep, vocab] logits of each row's last `keep` positions (last column: its last token)."""
    device, pad = _device(lm.model), pad_id(lm.tokenizer)
    if lm.family == "seq2seq":
        ids, mask = _pad([r.context for r in batch], pad, left=False, device=device)
        dec, dec_mask = _pad([r.decoder for r in batch], pad, left=False, device=device)
        out = lm.model(input_ids=ids, attention_mask=mask, decoder_input_ids=dec)
        last = dec_mask.sum(dim=1, keepdim=True) - 1
        places = (last - torch.arange(keep - 1, -1, -1, device=device)).clamp(min=0)
        return out.logits[torch.arange(len(batch), device=device)[:, None], places]
    ids, mask = _pad([r.context for r in batch], pad, left=True, device=device)
    extra = {} if prefixes.prompt_learning(lm.model) else {"position_ids": _positions(mask)}
    out = lm.model(input_ids=ids, attention_mask=mask, logits_to_keep=keep, **extra)
    return out.logits[:, -keep:]


def _positions(mask: Any) -> Any:
    """Position ids that start at 0 on each row's first real token (left padding)."""
    return (mask.cumsum(dim=1) - 1).clamp(min=0)


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
        with torch.inference_mode(), contiguous_head_inputs(model):
            yield
    finally:
        for module, training in modes:
            module.training = training


@contextmanager
def _bar(total: int, label: str | None, unit: str = "prompt") -> Iterator[Any]:
    """A tqdm bar labelled `label`, silent when label is None."""
    bar = tqdm(total=total, desc=label, disable=label is None, unit=unit)
    try:
        yield bar
    finally:
        bar.close()
