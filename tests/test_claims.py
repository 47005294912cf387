"""Claim and probe synthesis: balanced, deterministic, paired across conditions."""

from collections import Counter
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from sycophancy.errors import UserError
from sycophancy.probes.claims import opinion_items, opinion_label_items
from sycophancy.probes.probe_sets import build_probe_set, items_for
from sycophancy.records import Example, LabelledData

CONF = Path(__file__).resolve().parents[1] / "conf"


def probe_cfg(name: str, **overrides) -> dict:
    cfg = OmegaConf.to_container(OmegaConf.load(CONF / "probe" / f"{name}.yaml"))
    cfg.update(overrides)
    return cfg


DATASET = {
    "name": "toy",
    "topic": "sentiment",
    "task_question": "What is the sentiment of this review?",
}


def toy_data(n: int = 40) -> LabelledData:
    examples = [Example(f"toy/validation/{i}", f"review number {i}", i % 2) for i in range(n)]
    return LabelledData("toy", ("negative", "positive"), examples)


def test_opinion_probe_is_balanced_and_deterministic():
    data = toy_data(40)
    probe = probe_cfg("opinion")
    a = items_for(data, DATASET, probe, data_seed=7)
    b = items_for(data, DATASET, probe, data_seed=7)
    c = items_for(data, DATASET, probe, data_seed=8)
    assert a == b
    assert [i.user_text for i in a] != [i.user_text for i in c]
    none = [i for i in a if i.condition == "none"]
    truths = Counter(i.meta["truth"] for i in none)
    assert truths[True] == truths[False] == 20
    # an always-agree model scores exactly 50% with no opinion
    always_agree = [
        i.option_texts[i.gold].endswith("Agree") and "Disagree" not in i.option_texts[i.gold]
        for i in none
    ]
    assert sum(always_agree) == 20
    # Agree sits at (A) about half the time
    assert 10 <= sum(i.option_texts[0].endswith(" Agree") for i in none) <= 30


def test_opinion_conditions_share_everything_but_the_opinion():
    ex = Example("toy/validation/3", "a gorgeous, witty, seductive movie.", 1)
    items = opinion_items(ex, toy_data(), DATASET, probe_cfg("opinion"), 0, truth=False)
    none, wrong, right = items
    assert [i.condition for i in items] == ["none", "wrong", "right"]
    assert none.options == wrong.options == right.options and none.gold == wrong.gold == right.gold
    assert none.meta["claim"] == wrong.meta["claim"]
    assert "is negative" in none.meta["claim"]  # a false claim names the wrong label
    assert "I agree with the claim" in wrong.user_text  # wrong opinion backs the false claim
    assert "I disagree with the claim" in right.user_text
    assert "with the claim" not in none.user_text
    assert none.user_option is None
    assert wrong.user_option != wrong.gold and right.user_option == right.gold
    bio = none.user_text.split(". Do you")[0]
    assert wrong.user_text.startswith(bio.split(" I am ")[0])


def test_opinion_label_states_a_wrong_and_a_right_label():
    ex = Example("toy/validation/1", "dull and lifeless", 0)
    none, wrong, right = opinion_label_items(ex, toy_data(), DATASET, probe_cfg("opinion_label"), 0)
    assert none.options == ("negative", "positive") and none.gold == 0
    assert "I believe the answer is positive." in wrong.user_text and wrong.user_option == 1
    assert "I believe the answer is negative." in right.user_text and right.user_option == 0
    assert "I believe" not in none.user_text
    assert "What is the sentiment of this review?" in none.user_text


def test_multiclass_wrong_label_is_never_the_gold():
    data = LabelledData(
        "toy3", ("a", "b", "c"), [Example(f"t/{i}", f"x{i}", i % 3) for i in range(60)]
    )
    items = items_for(data, DATASET, probe_cfg("opinion_label"), 0)
    wrong = [i for i in items if i.condition == "wrong"]
    assert all(i.user_option != i.gold for i in wrong)
    assert len({i.user_option for i in wrong}) == 3


def test_negated_claims_keep_truth_right():
    data = toy_data(60)
    items = items_for(
        data, DATASET, probe_cfg("opinion", negation_rate=1.0), 0, conditions=("none",)
    )
    for item in items:
        label = data.label_names[int(item.example_id.rsplit("/", 1)[1]) % 2]
        assert " is not " in item.meta["claim"]
        assert item.meta["truth"] == (f"is not {label}" not in item.meta["claim"])


def test_statement_claims_use_the_row_label_as_truth():
    data = LabelledData(
        "addition",
        ("false", "true"),
        [Example("a/0", "1 + 2 = 3", 1), Example("a/1", "1 + 2 = 9", 0)],
    )
    items = items_for(
        data,
        {**DATASET, "claim_style": "statement", "topic": "math"},
        probe_cfg("opinion"),
        0,
        ("none",),
    )
    assert [i.meta["truth"] for i in items] == [True, False]
    assert items[0].meta["claim"] == "1 + 2 = 3"


def test_content_free_twins_and_empty_data():
    data = toy_data(10)
    probe = probe_cfg("opinion_label", content_free_examples=4)
    ps = build_probe_set(data, DATASET, probe, 0)
    assert len(ps.items) == 30
    assert len(ps.content_free) == 4 * 3 * len(probe["content_free_texts"])
    assert any('"N/A"' in i.user_text for i in ps.content_free)
    with pytest.raises(UserError):
        build_probe_set(LabelledData("toy", ("n", "p"), []), DATASET, probe, 0)
    with pytest.raises(UserError):
        items_for(data, DATASET, probe_cfg("opinion", persona="astronaut"), 0)
