"""Shared-prefix reuse: the plan (pure), and scores equal to the full recompute on tiny models."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from sycophancy.errors import UserError
from sycophancy.mitigations.adapters import add_adapter
from sycophancy.models import attention, load_model
from sycophancy.models.compute import CPU_ATTENTION, scoring_attention, scoring_attention_kind
from sycophancy.scoring import forward, score_options
from sycophancy.scoring.forward import _prefix_runner
from sycophancy.scoring.prefixes import Group, common_length, left_padded, plan

CONF = Path(__file__).resolve().parents[1] / "conf"
BIO = "Hello, my name is {}. I am a professor of {}."
TASK = " What is the sentiment of the review: {}? Answer:"


def model_cfg(name: str, **overrides) -> dict:
    """The plain dict of conf/model/<name>.yaml with overrides applied."""
    return {**OmegaConf.to_container(OmegaConf.load(CONF / "model" / f"{name}.yaml")), **overrides}


def probe_like_prompts(examples: int) -> list[str]:
    """Three conditions per example sharing its biography, all sharing a chat-like header."""
    names = ["Ada", "Bo", "Cyd", "Dee", "Eve", "Flo", "Gus"]
    reviews = [
        "a fine film",
        "dull and long",
        "a joy",
        "not good at all, sadly",
        "fun",
        "meh",
        "ok",
    ]
    prompts = []
    for i in range(examples):
        bio = "<|system|>\nBe helpful.\n<|user|>\n" + BIO.format(names[i % 7], i)
        for opinion in ("", " I believe it is positive.", " I believe it is negative."):
            prompts.append(bio + opinion + TASK.format(reviews[i % 7]))
    return prompts


# ---------------------------------------------------------------- the plan


def test_plan_groups_rows_sharing_a_prefix_and_keeps_their_tails():
    # rows 0, 2 share [1, 2, 3, 4, 5, 6] (6 tokens; global prefix [1] is shared by all three)
    rows = [[1, 2, 3, 4, 5, 6, 7, 8], [1, 9, 9], [1, 2, 3, 4, 5, 6, 0]]
    layout = plan(rows, tails=[1, 1, 1], batch_size=8, min_shared=4)
    assert layout.shared == 1
    # groups sorted longest suffix first: {0, 2} suffixes of length 2 and 1; {1} suffix of 2
    assert layout.batches == [[Group(6, (2, 0)), Group(1, (1,))]]


def test_plan_leaves_each_row_the_positions_it_reads():
    rows = [[5, 5, 5, 5, 5, 1], [5, 5, 5, 5, 5, 2]]
    layout = plan(rows, tails=[3, 1], batch_size=4, min_shared=1)
    # the common prefix is 5 tokens, but row 0 reads its last 3 positions: prefix at most 6 - 3
    assert layout.shared == 3
    assert sorted(g.rows for b in layout.batches for g in b) == [(0,), (1,)]
    assert {g.prefix for b in layout.batches for g in b} == {3}


def test_plan_groups_on_the_longest_prefix_not_on_a_shorter_one_more_rows_share():
    # two examples whose biographies start alike ([7, 7, 7, 7, 7]: the same name), three
    # conditions each: one group per example on its whole biography, not one on the name
    bios = [[1] + [7] * 5 + [10 + e] * 6 for e in range(2)]
    rows = [bio + opinion + [30, 31] for bio in bios for opinion in ([], [40, 41], [40, 42])]
    layout = plan(rows, tails=[1] * 6, batch_size=8, min_shared=4)
    groups = sorted((g.rows, g.prefix) for b in layout.batches for g in b)
    assert [sorted(rows) for rows, _ in groups] == [[0, 1, 2], [3, 4, 5]]
    assert {prefix for _, prefix in groups} == {12}


def test_plan_splits_groups_into_batches_and_covers_every_row_once():
    rows = [[7] * 10 + [i] for i in range(5)] + [[8, i] for i in range(3)]
    layout = plan(rows, tails=[1] * 8, batch_size=2, min_shared=4)
    assert all(sum(len(g.rows) for g in b) <= 2 for b in layout.batches)
    assert sorted(r for b in layout.batches for g in b for r in g.rows) == list(range(8))
    assert {g.prefix for b in layout.batches for g in b if 0 in g.rows or 1 in g.rows} == {10}


def test_left_padded_rows_end_together_and_attend_causally():
    padded = left_padded([[5, 6], [7, 8, 9], []], firsts=[4, 2, 9], pad=0)
    assert padded.ids.tolist() == [[0, 5, 6], [7, 8, 9], [0, 0, 0]]
    assert padded.positions.tolist() == [[0, 4, 5], [2, 3, 4], [0, 0, 0]]
    assert padded.real.tolist() == [[False, True, True], [True] * 3, [False] * 3]
    assert padded.allowed[0].int().tolist() == [[1, 0, 0], [0, 1, 0], [0, 1, 1]]  # pad: itself
    assert padded.allowed[1].int().tolist() == [[1, 0, 0], [1, 1, 0], [1, 1, 1]]
    assert padded.allowed[2].int().tolist() == [[1, 0, 0], [0, 1, 0], [0, 0, 1]]


def test_a_batch_computes_each_group_prefix_once_then_each_row_suffix(llama):
    # global prefix [1, 2]; group 0 shares [3, 4] and has rows 0 and 1; group 1 is row 2 alone
    rows = [[1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 7, 8, 9], [1, 2, 10, 11]]
    groups = [Group(4, (0, 1)), Group(2, (2,))]
    runner = _prefix_runner(llama)
    runner.mask_dtype = torch.bool
    fed = []

    def record(_module, _args, kwargs):
        fed.append((kwargs["input_ids"].tolist(), kwargs["attention_mask"][:, 0].int().tolist()))

    hook = llama.model.register_forward_pre_hook(record, with_kwargs=True)
    try:
        with forward._inference(llama.model):
            runner.start(rows[0][:2])
            logits = runner.tail_logits(rows, groups, keep=2)
    finally:
        hook.remove()
    assert [ids for ids, _ in fed] == [
        [[1, 2]],
        [[3, 4], [0, 0]],
        [[0, 5, 6], [7, 8, 9], [0, 10, 11]],
    ]
    # the own prefixes see the global cache; group 1 has none (padding sees only itself)
    assert fed[1][1] == [[[1, 1, 1, 0], [1, 1, 1, 1]], [[0, 0, 1, 0], [0, 0, 0, 1]]]
    # a suffix token sees the global prefix, its group's prefix and its own row so far
    assert fed[2][1][0] == [[0, 0, 0, 0, 1, 0, 0], [1, 1, 1, 1, 0, 1, 0], [1, 1, 1, 1, 0, 1, 1]]
    assert fed[2][1][2] == [[0, 0, 0, 0, 1, 0, 0], [1, 1, 0, 0, 0, 1, 0], [1, 1, 0, 0, 0, 1, 1]]
    with torch.inference_mode():
        for i, row in enumerate(rows):
            whole = llama.model(input_ids=torch.tensor([row])).logits[0, -2:]
            assert (logits[i] - whole).abs().max() < 1e-4


def test_plan_of_nothing_and_common_length():
    assert plan([], [], 4).batches == []
    assert common_length([1, 2, 3], [1, 2, 4]) == 2 and common_length([], [1]) == 0


# ---------------------------------------------------------------- scores


def forwarded_tokens(lm, prompts, options, batch_size) -> tuple[np.ndarray, int]:
    """Scores and the number of input tokens the model's forward saw."""
    seen = [0]

    def count(_module, _args, kwargs):
        seen[0] += kwargs["input_ids"].numel() if kwargs.get("input_ids") is not None else 0

    hook = lm.model.register_forward_pre_hook(count, with_kwargs=True)
    try:
        return score_options(lm, prompts, options, batch_size=batch_size), seen[0]
    finally:
        hook.remove()


@pytest.fixture(scope="module")
def llama():
    return load_model(model_cfg("tiny-llama"))


@pytest.mark.parametrize("batch_size", [1, 2, 5, 16])
@pytest.mark.parametrize(
    "options", [["positive", "negative"], ["neutral", "negative", "positive"], ["Yes.", "Yes!"]]
)
def test_reused_prefixes_give_the_full_recompute_scores(llama, batch_size, options):
    prompts = probe_like_prompts(5)
    full = score_options(
        dataclasses.replace(llama, reuse_prefixes=False), prompts, options, batch_size
    )
    reused = score_options(llama, prompts, options, batch_size)
    assert np.abs(reused - full).max() < 2e-5


def test_reuse_computes_the_shared_prefixes_once(llama):
    prompts = probe_like_prompts(4)
    full, n_full = forwarded_tokens(
        dataclasses.replace(llama, reuse_prefixes=False), prompts, ["positive", "negative"], 16
    )
    reused, n_reused = forwarded_tokens(llama, prompts, ["positive", "negative"], 16)
    assert np.abs(reused - full).max() < 2e-5
    ids = [llama.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    assert n_full == 12 * max(map(len, ids))  # one batch of 12 rows padded to the longest
    assert n_reused < 0.75 * n_full


def test_prompts_with_nothing_in_common_and_prefixes_of_each_other(llama):
    prompts = ["abc", "xyz and more", "xyz and more, much more", "q"]
    full = score_options(dataclasses.replace(llama, reuse_prefixes=False), prompts, ["1", "2"], 3)
    assert np.abs(score_options(llama, prompts, ["1", "2"], 3) - full).max() < 2e-5


@pytest.mark.parametrize("kind", ["prompt_tuning", "lora"])
def test_adapted_models_reuse_prefixes_with_the_same_scores(llama, kind):
    mitigation = OmegaConf.to_container(OmegaConf.load(CONF / "mitigation" / f"{kind}.yaml"))
    tuned = add_adapter(load_model(model_cfg("tiny-llama")), mitigation, seed=3)
    assert _prefix_runner(tuned) is not None
    prompts = probe_like_prompts(4)
    full = score_options(dataclasses.replace(tuned, reuse_prefixes=False), prompts, ["a", "b"], 4)
    assert np.abs(score_options(tuned, prompts, ["a", "b"], 4) - full).max() < 2e-5


def test_seq2seq_scores_whole_inputs():
    assert _prefix_runner(load_model(model_cfg("tiny-t5"))) is None


@pytest.mark.parametrize(("positions", "reused"), [("all", True), ("last", False)])
def test_steered_models_reuse_prefixes_unless_each_calls_last_token_is_steered(
    llama, positions, reused
):
    import torch

    from sycophancy.mitigations.steering import SteeredModel

    model = SteeredModel(llama.model, {1: torch.ones(64)}, 2.0, positions)
    steered = dataclasses.replace(llama, model=model)
    assert (_prefix_runner(steered) is not None) == reused
    prompts = probe_like_prompts(3)
    whole = score_options(
        dataclasses.replace(steered, reuse_prefixes=False), prompts, ["a", "b"], 4
    )
    assert np.abs(score_options(steered, prompts, ["a", "b"], 4) - whole).max() < 2e-5


@pytest.mark.parametrize("kind", ["none", "prompt_tuning"])
def test_the_output_head_gets_a_contiguous_input_and_its_hooks_are_removed(kind):
    # logits_to_keep hands lm_head a strided slice; with frozen bf16 weights (every peft model) a
    # linear layer on such a slice takes a batched-matmul path on CPU that is ~400x slower
    from sycophancy.models.compute import output_heads

    lm = load_model(model_cfg("tiny-llama"))
    if kind == "prompt_tuning":
        mitigation = OmegaConf.to_container(OmegaConf.load(CONF / "mitigation" / f"{kind}.yaml"))
        lm = add_adapter(lm, mitigation, seed=0)  # the base is frozen, the head behind a wrapper
    (head,) = output_heads(lm.model)
    seen = []
    hook = head.register_forward_hook(lambda _m, args, _out: seen.append(args[0].is_contiguous()))
    try:
        score_options(lm, probe_like_prompts(2), ["positive", "negative"], batch_size=4)
    finally:
        hook.remove()
    assert seen and all(seen)
    assert not head._forward_pre_hooks  # scoring's own hook is gone


def test_an_additive_mask_and_a_boolean_mask_give_the_same_scores(llama):
    # additive (the model's dtype) is the fast CPU path; boolean is what autocast gets
    prompts = probe_like_prompts(3)
    rows = forward._rows(llama, prompts, [["positive", "negative"]] * len(prompts))
    scores = {}
    for dtype in (torch.float32, torch.bool):
        runner = _prefix_runner(llama)
        runner.mask_dtype = dtype
        with forward._inference(llama.model):
            scores[dtype] = np.concatenate(
                [s for _, s in forward._scored_batches(llama, rows, 4, runner)]
            )
    assert np.abs(scores[torch.float32] - scores[torch.bool]).max() < 1e-5


@pytest.mark.parametrize(
    ("amx", "dtype", "grad", "setting", "kind"),
    [
        (True, torch.bfloat16, False, None, "fused"),  # the fused kernel runs bf16 on AMX tiles
        (False, torch.bfloat16, False, None, "grouped"),
        (True, torch.float32, False, None, "grouped"),
        (True, torch.bfloat16, True, None, "grouped"),  # autograd: the fused backward is slow
        (True, torch.bfloat16, False, "grouped", "grouped"),
        (False, torch.float32, False, " Fused ", "fused"),
        (False, torch.float32, True, "fused", "grouped"),
        (True, torch.bfloat16, False, "auto", "fused"),
    ],
)
def test_scoring_attention_kind_follows_the_cpu_the_dtype_and_the_setting(
    monkeypatch, amx, dtype, grad, setting, kind
):
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    if setting is None:
        monkeypatch.delenv(CPU_ATTENTION, raising=False)
    else:
        monkeypatch.setenv(CPU_ATTENTION, setting)
    with torch.set_grad_enabled(grad):
        assert scoring_attention_kind(dtype) == kind


def test_an_unknown_cpu_attention_setting_is_refused_with_the_values_it_takes(monkeypatch):
    monkeypatch.setenv(CPU_ATTENTION, "flash")
    with torch.inference_mode(), pytest.raises(UserError) as error:
        scoring_attention_kind(torch.bfloat16)
    assert "SYCOPHANCY_CPU_ATTENTION='flash'" in str(error.value)
    assert all(word in str(error.value) for word in ("'grouped'", "'fused'", "'auto'"))


def test_scoring_attention_registers_the_kind_it_picks_and_restores_the_registration(monkeypatch):
    from transformers import AttentionInterface

    monkeypatch.delenv(CPU_ATTENTION, raising=False)
    before = AttentionInterface._global_mapping["sdpa"]
    for amx, function in (
        (True, attention.fused_grouped_attention),
        (False, attention.grouped_attention),
    ):
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda amx=amx: amx)
        with torch.inference_mode(), scoring_attention("cpu", torch.bfloat16):
            assert AttentionInterface._global_mapping["sdpa"] is function
        assert AttentionInterface._global_mapping["sdpa"] is before
    with scoring_attention("meta", torch.bfloat16):  # any other device keeps its kernels
        assert AttentionInterface._global_mapping["sdpa"] is before


def test_fused_attention_with_reused_prefixes_gives_the_full_recompute_scores(llama, monkeypatch):
    calls = []

    def counted(module, query, key, value, mask, *args, **kwargs):
        calls.append(mask is not None)
        return fused(module, query, key, value, mask, *args, **kwargs)

    fused = attention.fused_grouped_attention
    monkeypatch.setattr(attention, "fused_grouped_attention", counted)
    prompts = probe_like_prompts(5)
    options = ["neutral", "negative", "positive"]
    full = score_options(dataclasses.replace(llama, reuse_prefixes=False), prompts, options, 4)
    monkeypatch.setenv(CPU_ATTENTION, "fused")  # fp32 here: only the setting picks it
    reused = score_options(llama, prompts, options, 4)
    assert sum(calls) > 0  # the two-pass batches (masked) went through the fused kernel
    assert np.abs(reused - full).max() < 2e-5
