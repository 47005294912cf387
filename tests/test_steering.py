"""mitigation=steering (CAA): vectors of the right shape from contrast pairs, hooks that never
outlive a call (also on error), multiplier 0 exact, a nonzero one moving scores, save/load, and
train.py / evaluate.py end to end on tiny models of both families."""

import json

import numpy as np
import pytest
import torch
from helpers import CONF, compose_config
from omegaconf import OmegaConf

from sycophancy import scoring
from sycophancy.errors import UserError
from sycophancy.mitigations import steering
from sycophancy.mitigations.registry import get_mitigation
from sycophancy.models import load_model
from sycophancy.records import TrainItem
from sycophancy.scoring.prefixes import cache_keyword

PROMPTS = ["Review: a dull film. Sentiment:", "Review: a lovely, warm film. Sentiment:"]
OPTIONS = [" positive", " negative"]


def lm_of(name: str):
    return load_model(OmegaConf.to_container(OmegaConf.load(CONF / "model" / f"{name}.yaml")))


def mitigation(**extra) -> dict:
    node = OmegaConf.to_container(OmegaConf.load(CONF / "mitigation" / "steering.yaml"))
    return {**node, "layer": 1, **extra}


def items() -> list[TrainItem]:
    """Two prompts whose user is wrong, one whose user is right (no contrast: left out)."""
    rows = [("a dull film", " negative", " positive"), ("a warm film", " positive", " negative")]
    out = [
        TrainItem(f"Review: {t}. Sentiment:", gold, (False, gold), str(i), user)
        for i, (t, gold, user) in enumerate(rows)
    ]
    return out + [
        TrainItem("Review: ok. Sentiment:", " positive", (True, " positive"), "9", " positive")
    ]


def hook_count(model) -> int:
    return sum(len(block._forward_hooks) for block in steering.layers_of(model))


@pytest.fixture(scope="module", params=["tiny-llama", "tiny-t5"])
def lm(request):
    return lm_of(request.param)


def test_vectors_have_the_residual_width_and_are_the_mean_contrast(lm):
    pairs = steering.contrast_items(items(), None, seed=0)
    assert [it.example_id for it in pairs] == ["0", "1"] or [it.example_id for it in pairs] == [
        "1",
        "0",
    ]
    vectors = steering.fit_vectors(lm, pairs, [0, 1], "answer")
    width = steering.hidden_size(lm.model)
    assert set(vectors) == {0, 1} and all(v.shape == (width,) for v in vectors.values())
    assert all(v.dtype == torch.float32 and v.norm() > 0 for v in vectors.values())
    one = steering.fit_vectors(lm, pairs[:1], [1], "answer")[1]
    two = steering.fit_vectors(lm, pairs[1:], [1], "answer")[1]
    torch.testing.assert_close(vectors[1], (one + two) / 2)  # padding in a batch changes nothing
    # a fit that stops after layer 0 reads what the full pass reads there
    torch.testing.assert_close(steering.fit_vectors(lm, pairs, [0], "answer")[0], vectors[0])
    assert hook_count(lm.model) == 0  # the reading hooks are gone too


def test_multiplier_zero_is_exact_and_a_nonzero_one_moves_every_score(lm):
    vectors = steering.fit_vectors(lm, steering.contrast_items(items(), None, 0), [1], "answer")
    plain = scoring.score_options(lm, PROMPTS, OPTIONS)
    zero = scoring.score_options(
        steering.steered(lm, vectors, mitigation(multiplier=0.0)), PROMPTS, OPTIONS
    )
    assert np.array_equal(plain, zero)  # bit-identical
    moved = scoring.score_options(
        steering.steered(lm, vectors, mitigation(multiplier=8.0)), PROMPTS, OPTIONS
    )
    assert np.all(moved != plain)
    assert hook_count(lm.model) == 0


def test_hooks_are_removed_after_a_call_and_after_an_exception(lm):
    vectors = {1: torch.ones(steering.hidden_size(lm.model))}
    model = steering.steered(lm, vectors, mitigation()).model
    inside = []

    def boom(*_args, **_kwargs):
        inside.append(hook_count(lm.model))
        raise RuntimeError("forward failed")

    original, lm.model.forward = lm.model.forward, boom
    try:
        with pytest.raises(RuntimeError, match="forward failed"):
            model(input_ids=torch.tensor([[1, 2]]))
    finally:
        del lm.model.forward
    assert inside == [1] and hook_count(lm.model) == 0
    assert lm.model.forward.__func__ is original.__func__


def test_steering_all_positions_is_the_same_with_a_cached_prefix():
    lm = lm_of("tiny-llama")
    ids = torch.tensor([[5, 17, 42, 8, 99, 23, 61]])
    vectors = {
        1: torch.randn(steering.hidden_size(lm.model), generator=torch.Generator().manual_seed(0))
    }
    model = steering.steered(lm, vectors, mitigation(multiplier=3.0)).model
    with torch.inference_mode():
        whole = model(input_ids=ids).logits[:, -1]
        prefix = model(input_ids=ids[:, :4], use_cache=True)
        keyword = cache_keyword(
            model
        )  # `cache` in transformers >= 5.x (past_key_values deprecated)
        rest = model(input_ids=ids[:, 4:], **{keyword: prefix.past_key_values}).logits[:, -1]
        plain = lm.model(input_ids=ids).logits[:, -1]
    torch.testing.assert_close(whole, rest)
    assert not torch.allclose(whole, plain)


def test_save_and_load_round_trip_and_a_foreign_vector_is_refused(tmp_path, lm):
    vectors = steering.fit_vectors(lm, steering.contrast_items(items(), None, 0), [1], "answer")
    info = {"model": lm.name, "hidden_size": steering.hidden_size(lm.model), "layers": [1]}
    path = steering.save_vectors(tmp_path / steering.VECTOR_FILE, vectors, info)
    assert path.stat().st_size < 4096  # kilobytes
    from sycophancy.files import FILE_MODE

    assert path.stat().st_mode & 0o777 == FILE_MODE  # readable as the umask says, not 0600
    loaded, read_info = steering.load_vectors(tmp_path)  # the run folder works too
    assert read_info == info and torch.equal(loaded[1], vectors[1])
    assert steering.matching(lm, loaded, read_info, mitigation(), path) is loaded
    with pytest.raises(UserError, match="fitted on model"):
        steering.matching(lm, loaded, {**info, "model": "other"}, mitigation(), path)
    with pytest.raises(UserError, match="hidden size"):
        steering.matching(lm, loaded, {**info, "hidden_size": 7}, mitigation(), path)
    with pytest.raises(UserError, match="mitigation.layer"):
        steering.matching(lm, loaded, info, mitigation(layer=0), path)


def test_bad_settings_are_refused_before_the_model_loads(tmp_path):
    check = get_mitigation("steering").check
    check({"mitigation": mitigation()})
    bad = [
        {"layer": "middle"}, {"layer": []}, {"read_position": "first"}, {"steer_positions": "some"},
        {"fit_examples": 0}, {"vector_path": str(tmp_path / "nothing.safetensors")},
    ]  # fmt: skip
    for extra in bad:
        with pytest.raises(UserError, match="mitigation"):
            check({"mitigation": mitigation(**extra)})
    with pytest.raises(UserError, match="seq2seq"):
        check({"mitigation": mitigation(steer_positions="last"), "model": {"family": "seq2seq"}})
    with pytest.raises(UserError, match="outside the model"):
        steering.checked_layers(lm_of("tiny-llama").model, [2])


@pytest.mark.parametrize("model", ["tiny-llama", "tiny-t5"])
def test_train_fits_saves_and_evaluate_reloads_on_every_probe(tmp_path, model):
    from sycophancy.files import read_jsonl
    from sycophancy.runs.evaluate import evaluate
    from sycophancy.runs.train import train

    common = [f"model={model}", "logger=none", "mitigation=steering", "mitigation.layer=1"]
    cfg = compose_config(
        "train",
        [*common, "dataset.limit=8", "training.train_limit=24", "training.filter=false",
         "training.val_probe_limit=2", "mitigation.fit_examples=6", f"output_dir={tmp_path / 'fit'}"],
    )  # fmt: skip
    train(cfg)
    metrics = json.loads((tmp_path / "fit" / "metrics.json").read_text())
    assert {"before", "after", "delta"} <= set(metrics)
    assert (
        "alignment_wrong_filtered_mcnemar" in metrics["delta"]
        or metrics["delta"]["n_filtered"] == 0
    )
    assert "alignment_wrong_mcnemar" in metrics["delta"]
    assert metrics["training"]["steps"] == 0  # fitted, not trained
    vector = tmp_path / "fit" / steering.VECTOR_FILE
    assert metrics["training"]["adapter"] == str(vector)
    vectors, info = steering.load_vectors(vector)
    assert info["model"] == model and info["pairs"] == 6 and list(vectors) == [1]

    def evaluated(name, *extra, base=common):
        out = tmp_path / name
        evaluate(compose_config("evaluate", [*base, f"output_dir={out}", *extra]))
        return read_jsonl(out / "examples.jsonl")

    label = ["dataset.limit=4", "probe.content_free_examples=0", "probe.calibration=none"]
    untouched = evaluated("none", *label, base=[f"model={model}", "logger=none"])
    zero = evaluated("zero", *label, f"mitigation.vector_path={vector}", "mitigation.multiplier=0")
    steered = evaluated("four", *label, f"mitigation.vector_path={vector}")
    assert [r["scores"] for r in zero] == [r["scores"] for r in untouched]
    assert [r["scores"] for r in steered] != [r["scores"] for r in untouched]
    sure = evaluated(
        "sure", "probe=are_you_sure", "dataset=arithmetic_mc", "dataset.limit=3",
        f"mitigation.vector_path={vector}",
    )  # fmt: skip
    assert len(sure) == 3
    other = "tiny-t5" if model == "tiny-llama" else "tiny-llama"
    with pytest.raises(UserError, match="fitted on model"):
        evaluated("other", *label, f"model={other}", f"mitigation.vector_path={vector}")


def test_steering_the_last_position_moves_only_what_follows_it():
    lm = lm_of("tiny-llama")
    ids = torch.tensor([[5, 17, 42, 8, 99]])
    vectors = {1: torch.ones(steering.hidden_size(lm.model))}
    last = steering.steered(lm, vectors, mitigation(multiplier=4.0, steer_positions="last")).model
    with torch.inference_mode():
        plain, moved = lm.model(input_ids=ids).logits, last(input_ids=ids).logits
    torch.testing.assert_close(moved[:, :-1], plain[:, :-1])  # earlier positions never see it
    assert not torch.allclose(moved[:, -1], plain[:, -1])
    assert hook_count(lm.model) == 0


def test_the_steered_model_looks_like_its_base_to_callers():
    lm = lm_of("tiny-llama")
    model = steering.steered(lm, {1: torch.zeros(64)}, mitigation()).model
    assert model.config is lm.model.config and model.device == lm.model.device
    assert model.get_decoder() is lm.model.get_decoder()
    assert [p.data_ptr() for p in model.parameters()] == [
        p.data_ptr() for p in lm.model.parameters()
    ]


@pytest.mark.slow
def test_embedded_model_fits_a_vector_and_multiplier_zero_is_exact(tmp_path, data_dir):
    from sycophancy.files import read_jsonl
    from sycophancy.runs.evaluate import evaluate
    from sycophancy.runs.train import train

    data = ["dataset=sst2", f"dataset.data_dir={data_dir / 'sst2'}", "model.dtype=bfloat16"]
    data += ["logger=none", "probe.content_free_examples=0"]
    train(compose_config("train", [
        *data, "dataset.limit=16", "mitigation=steering", "mitigation.layer=10",
        "training.filter=false", "training.train_limit=48", "mitigation.fit_examples=8",
        "training.val_probe_limit=2", f"output_dir={tmp_path / 'fit'}",
    ]))  # fmt: skip
    vectors, info = steering.load_vectors(tmp_path / "fit")
    assert info["hidden_size"] == 576 and vectors[10].shape == (576,) and info["pairs"] == 8

    def scores(name, *extra):
        overrides = [*data, "dataset.limit=8", f"output_dir={tmp_path / name}", *extra]
        evaluate(compose_config("evaluate", overrides))
        return [r["scores"] for r in read_jsonl(tmp_path / name / "examples.jsonl")]

    steer = [
        "mitigation=steering",
        "mitigation.layer=10",
        f"mitigation.vector_path={tmp_path / 'fit'}",
    ]
    untouched = scores("none")  # one run folder per run: a finished one is not reused
    assert scores("zero", *steer, "mitigation.multiplier=0") == untouched
    assert scores("eight", *steer, "mitigation.multiplier=8") != untouched
