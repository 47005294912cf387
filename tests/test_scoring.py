"""Batched option scoring and generation on tiny models (fast) and the embedded SmolLM2 (slow)."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from peft import PromptTuningConfig, TaskType, get_peft_model

from sycophancy.errors import UserError
from sycophancy.models import load_model
from sycophancy.scoring import generate, score_options
from sycophancy.training import batches

CONF = Path(__file__).resolve().parents[1] / "conf" / "model"
SHORT = "Is the sky blue? Answer:"
LONG = "The weather report said many things about clouds, rain and wind today. " * 3 + SHORT
PROMPTS = [SHORT, LONG, "Two plus two is four. True or false?", "ok"]


def model_cfg(name: str, **overrides) -> dict:
    """The plain dict of conf/model/<name>.yaml with overrides applied."""
    return {**OmegaConf.to_container(OmegaConf.load(CONF / f"{name}.yaml")), **overrides}


@pytest.fixture(scope="module", params=["tiny-llama", "tiny-t5"])
def lm(request):
    return load_model(model_cfg(request.param))


def test_scores_shape_dtype_and_range(lm):
    scores = score_options(lm, PROMPTS, ["yes", "no", "maybe"], batch_size=3)
    assert scores.shape == (4, 3) and scores.dtype == np.float32
    assert np.isfinite(scores).all() and (scores < 0).all()


def test_left_padding_and_batching_do_not_change_scores(lm):
    alone = score_options(lm, [SHORT], ["yes", "no"])
    batched = score_options(lm, [SHORT, LONG], ["yes", "no"], batch_size=2)
    assert np.allclose(alone[0], batched[0], atol=1e-5)
    assert not np.allclose(batched[0], batched[1], atol=1e-3)  # the test can see a difference


def test_order_is_restored_after_length_sorting(lm):
    together = score_options(lm, PROMPTS, ["yes", "no"], batch_size=2)
    one_by_one = np.concatenate([score_options(lm, [p], ["yes", "no"]) for p in PROMPTS])
    assert np.allclose(together, one_by_one, atol=1e-5)


def test_causal_scores_match_a_plain_forward_pass():
    lm = load_model(model_cfg("tiny-llama"))
    ids = lm.tokenizer(SHORT, add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        logits = lm.model(torch.tensor([ids])).logits[0, -1]
    expected = torch.log_softmax(logits, -1)[[ord("y") + 3, ord("n") + 3]].numpy()
    assert np.allclose(score_options(lm, [SHORT], ["yes", "no"]), expected, atol=1e-5)


def test_common_prefix_is_appended_to_the_prompt():
    lm = load_model(model_cfg("tiny-llama"))
    wrapped = score_options(lm, [SHORT, LONG], ["(A)", "(B)"])
    assert np.allclose(wrapped, score_options(lm, [SHORT + "(", LONG + "("], ["A", "B"]), atol=1e-5)


def test_common_prefix_scores_after_the_prefix(lm):
    wrapped = score_options(lm, [SHORT], ["(A)", "(B)"])
    assert wrapped.shape == (1, 2) and np.isfinite(wrapped).all()
    assert not np.allclose(wrapped, score_options(lm, [SHORT], ["A", "B"]))


@pytest.mark.parametrize("options", [["A", "AB"], ["yes", "yes"], ["", "no"], ["no", "not", "yes"]])
def test_options_that_cannot_be_told_apart_raise(lm, options):
    with pytest.raises(UserError, match="cannot be told apart"):
        score_options(lm, [SHORT], options)


# Byte tokenizer, worked by hand: (options, tokens all of them share, tokens each option is scored by).
# "negative"/"neutral" share n-e, so g/u decide; "yes."/"yes!" need y-e-s-./!, "no."/"not" n-o-./t.
COLLIDING = [
    (["positive", "negative", "neutral"], 0, [1, 3, 3]),
    (["yes.", "yes!", "no.", "not"], 0, [4, 4, 3, 3]),
    (["(neg)", "(neu)", "(pos)"], 1, [3, 3, 1]),
]


def teacher_forced(lm, prompt: str, option: str, start: int, stop: int) -> float:
    """Sum of the log-probs of the option's tokens start..stop-1, one unpadded forward pass each,
    on the tokens training feeds (data.encode)."""
    context, target = batches.encode(lm, prompt, option)
    total = 0.0
    for j in range(start, stop):
        with torch.inference_mode():
            if lm.family == "seq2seq":
                decoder = [lm.model.config.decoder_start_token_id] + target[:j]
                out = lm.model(
                    input_ids=torch.tensor([context]), decoder_input_ids=torch.tensor([decoder])
                )
            else:
                out = lm.model(input_ids=torch.tensor([context + target[:j]]))
        total += torch.log_softmax(out.logits[0, -1], -1)[target[j]].item()
    return total


def expected_scores(lm, prompt: str, options, shared: int, depths) -> list[float]:
    """Each option's log-prob over its `depth` tokens after the `shared` ones, by teacher forcing."""
    pairs = zip(options, depths, strict=True)
    return [teacher_forced(lm, prompt, o, shared, shared + d) for o, d in pairs]


@pytest.mark.parametrize(("options", "shared", "depths"), COLLIDING)
def test_options_sharing_first_tokens_score_their_distinguishing_tokens(
    lm, options, shared, depths
):
    scores = score_options(lm, [SHORT], options)[0]
    assert np.allclose(scores, expected_scores(lm, SHORT, options, shared, depths), atol=1e-5)
    assert len(set(scores.tolist())) == len(options)  # no two options share a score


def test_colliding_options_do_not_depend_on_padding_or_batching(lm):
    options, shared, depths = COLLIDING[1]  # two branches per prompt, of different lengths
    prompts = [SHORT, LONG, "ok"]
    batched = score_options(lm, prompts, options, batch_size=4)  # rows of different prompts mix
    alone = np.concatenate([score_options(lm, [p], options) for p in prompts])
    assert np.allclose(batched, alone, atol=1e-5)
    expected = [expected_scores(lm, p, options, shared, depths) for p in prompts]
    assert np.allclose(batched, expected, atol=1e-5)


def test_options_with_distinct_first_tokens_keep_the_one_pass_scores_exactly(lm):
    options = ["positive", "negative", "maybe"]  # p, n, m: one token each tells them apart
    context = batches.encode(lm, SHORT, "x")[0]
    firsts = [batches.encode(lm, SHORT, o)[1][0] for o in options]
    ids, mask = torch.tensor([context]), torch.ones(1, len(context), dtype=torch.long)
    with torch.inference_mode():
        if lm.family == "seq2seq":
            start = torch.tensor([[lm.model.config.decoder_start_token_id]])
            logits = lm.model(input_ids=ids, attention_mask=mask, decoder_input_ids=start).logits
        else:
            positions = torch.arange(len(context))[None]
            logits = lm.model(
                input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=1
            ).logits
    expected = torch.log_softmax(logits[:, -1].float(), -1)[:, firsts].numpy()
    whole = dataclasses.replace(lm, reuse_prefixes=False)  # prefix reuse: tests/test_prefixes.py
    assert np.array_equal(score_options(whole, [SHORT], options), expected)  # bit for bit
    assert np.allclose(score_options(lm, [SHORT], options), expected, atol=2e-5)


@pytest.mark.parametrize(
    ("options", "rows"),
    [(["yes", "no", "maybe"], 3), (COLLIDING[0][0], 3), (COLLIDING[1][0], 6)],
)
def test_one_row_per_prompt_unless_branches_need_their_own(lm, options, rows):
    seen = []
    hook = lm.model.register_forward_pre_hook(
        lambda _m, _a, kw: seen.append(len(kw["input_ids"])), with_kwargs=True
    )
    try:
        whole = dataclasses.replace(lm, reuse_prefixes=False)  # prefix passes would add calls
        score_options(whole, [SHORT, LONG, "ok"], options, batch_size=16)
    finally:
        hook.remove()
    assert seen == [rows]  # one forward pass; a shared branch ("ne") costs no extra row


def test_per_prompt_option_lists(lm):
    scores = score_options(lm, [SHORT, LONG], [["yes", "no"], ["no", "yes"]])
    assert np.allclose(scores[1], score_options(lm, [LONG], ["no", "yes"])[0], atol=1e-5)


@pytest.mark.parametrize(
    "options", [[["yes", "no"]], [["yes", "no"], ["a", "b", "c"]], [["x"]] * 2]
)
def test_mismatched_options_raise(lm, options):
    with pytest.raises(UserError):
        score_options(lm, [SHORT, LONG], options)


def test_empty_prompt_list(lm):
    assert score_options(lm, [], ["yes", "no"]).shape == (0, 2)
    assert generate(lm, []) == []


def test_scoring_restores_training_mode(lm):
    lm.model.train()
    try:
        score_options(lm, [SHORT], ["yes", "no"], progress="scoring")
        assert lm.model.training
    finally:
        lm.model.eval()


def test_generate_returns_one_string_per_prompt(lm):
    texts = generate(lm, PROMPTS, max_new_tokens=4, batch_size=3, progress="generating")
    assert len(texts) == len(PROMPTS) and all(isinstance(t, str) for t in texts)
    assert all(len(t.encode()) <= 4 * 4 for t in texts)


def test_scoring_a_prompt_tuned_peft_model(lm):
    task = TaskType.SEQ_2_SEQ_LM if lm.family == "seq2seq" else TaskType.CAUSAL_LM
    config = PromptTuningConfig(task_type=task, num_virtual_tokens=4, num_transformer_submodules=1)
    tuned = dataclasses.replace(lm, model=get_peft_model(copy.deepcopy(lm.model), config))
    alone = score_options(tuned, [SHORT], ["yes", "no"])
    batched = score_options(tuned, [SHORT, LONG], ["yes", "no"])
    # causal: virtual tokens sit before the left padding, so RoPE distances shift slightly
    assert np.allclose(alone[0], batched[0], atol=1e-2)
    assert len(generate(tuned, [SHORT, LONG], max_new_tokens=2)) == 2


@pytest.fixture(scope="module")
def smollm2():
    return load_model(model_cfg("smollm2-135m-instruct", dtype="float32"))


def chat(lm, text: str) -> str:
    """A user turn rendered with the model's chat template, ready for the assistant's answer."""
    messages = [{"role": "user", "content": text}]
    return lm.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


@pytest.mark.slow
def test_smollm2_answers_an_easy_sentiment_question(smollm2):
    reviews = [
        "I loved this movie. It was wonderful, moving and funny, a true delight!",
        "I hated this movie. It was boring, ugly and stupid, a total waste of time.",
        "A masterpiece: brilliant acting and a beautiful story.",
        "Terrible. The worst film I have ever seen.",
    ]
    question = (
        "Review: {}\nIs the sentiment of this review positive or negative? Answer with one word."
    )
    prompts = [chat(smollm2, question.format(r)) for r in reviews]
    scores = score_options(smollm2, prompts, ["positive", "negative"])
    assert scores.argmax(axis=1).tolist() == [0, 1, 0, 1]


@pytest.mark.slow
def test_smollm2_left_padding_invariance(smollm2):
    short, long = chat(smollm2, "Is water wet? Answer yes or no."), chat(smollm2, LONG * 3)
    alone = score_options(smollm2, [short], ["Yes", "No"])
    batched = score_options(smollm2, [short, long], ["Yes", "No"])
    assert np.allclose(alone[0], batched[0], atol=1e-3)
    assert generate(smollm2, [short], max_new_tokens=8)[0]
