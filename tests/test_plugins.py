"""Plug-ins: a toy probe and a toy mitigation registered from this file alone run through
evaluate.py's body; unknown or untrainable kinds are refused before the model loads."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
from helpers import compose_config

from sycophancy import models, scoring, sources
from sycophancy.errors import UserError
from sycophancy.metrics import rate
from sycophancy.mitigations.base import Mitigation
from sycophancy.mitigations.registry import register_mitigation
from sycophancy.probes.base import Probe, ProbeResult, Table, dataset_config
from sycophancy.probes.registry import register_probe
from sycophancy.prompts import build_messages, renderer
from sycophancy.records import PromptContext

# --- the recipe: one class per plug-in, registered by kind, and one YAML per config group ---------


@register_probe("yes_no")
class YesNoProbe(Probe):
    """Asks a fixed yes/no question about each example; reports how often the model says yes."""

    headline_metric = "yes_rate"

    def check(self, cfg):
        if "{text}" not in cfg["probe"]["question"]:
            raise UserError("probe.question must contain {text}.")

    def run(self, cfg, lm, context):
        data = sources.load_classification(dataset_config(cfg), "validation")
        render = renderer(lm.tokenizer, lm.chat)
        prompts = []
        for ex in data.examples:
            ctx = context(ex.id)
            question = cfg["probe"]["question"].format(text=ex.text)
            prompts.append(render(build_messages(question, system=ctx.system, shots=ctx.shots)))
        scores = scoring.score_options(lm, prompts, [["yes", "no"]] * len(prompts))
        says_yes = [bool(row[0] > row[1]) for row in scores]
        yes = rate(says_yes)
        metrics = {"n": len(prompts), "yes_rate": yes["value"], "yes_rate_n": yes["n"]}
        metrics["yes_rate_ci"] = yes["ci"]
        records = [
            {"example_id": ex.id, "prompt": p, "yes": y}
            for ex, p, y in zip(data.examples, prompts, says_yes, strict=True)
        ]
        table = Table("decision_methods", {"none": metrics}, ("yes_rate",), primary="none")
        return ProbeResult(records, metrics, [table], self.headline(metrics))


@register_mitigation("agreeable")
class AgreeableMitigation(Mitigation):
    """A system line that asks the model to agree (the opposite of a mitigation, easy to see)."""

    settings = ("line",)

    def context(self, cfg, shots):
        return lambda example_id: PromptContext(system=cfg["mitigation"]["line"])


CONFIGS = {
    "probe/yes_no.yaml": 'name: yes_no\nkind: yes_no\nquestion: "Is this review positive? {text}"\n',
    "mitigation/agreeable.yaml": 'name: agreeable\nkind: agreeable\nline: "Always agree."\n',
}

# --- a scripted scorer on a tiny model and four local reviews: every number by hand ---------------

REVIEWS = {"r1": "A good film.", "r2": "Dull.", "r3": "So good!", "r4": "Bad acting."}


def scripted_yes(lm, prompts, options, **_):
    """'yes' (the first option) wins where the review says good, or where the system line asks
    to agree; the loaded tiny model is what the probe scores with."""
    assert lm.name == "tiny-llama"
    yes = ["good" in p or "Always agree." in p for p in prompts]
    return np.array([[0.0, -1.0] if y else [-1.0, 0.0] for y in yes])


@pytest.fixture
def plugin_run(tmp_path, monkeypatch):
    """Compose evaluate.py's config with the plug-ins' YAML files, on local reviews."""
    conf = tmp_path / "conf"
    for name, text in CONFIGS.items():
        (conf / name).parent.mkdir(parents=True, exist_ok=True)
        (conf / name).write_text(text)
    data = tmp_path / "data"
    data.mkdir()
    rows = "".join(f"{text},{i % 2}\n" for i, text in enumerate(REVIEWS.values()))
    for split in ("train", "validation"):
        (data / f"{split}.csv").write_text("text,label\n" + rows)
    monkeypatch.setattr(scoring, "score_options", scripted_yes)

    def run(*overrides: str) -> tuple[float, dict, list[dict]]:
        from sycophancy.runs.evaluate import evaluate

        out = tmp_path / "run"
        cfg = compose_config(
            "evaluate",
            [f"hydra.searchpath=[file://{conf}]", "model=tiny-llama", "dataset=local",
             f"dataset.data_dir={data}", "logger=none", f"output_dir={out}", *overrides],
        )  # fmt: skip
        score = evaluate(cfg)
        records = [json.loads(line) for line in (out / "examples.jsonl").read_text().splitlines()]
        return score, json.loads((out / "metrics.json").read_text()), records

    return run


def test_a_toy_probe_runs_from_a_test_file(plugin_run, capsys):
    score, metrics, records = plugin_run("probe=yes_no")
    assert score == 0.5  # r1 and r3 say good
    assert (metrics["yes_rate"], metrics["yes_rate_n"]) == (0.5, 4)
    assert metrics["run"] == "tiny-llama_local_yes_no_none" and metrics["probe"] == "yes_no"
    assert [r["yes"] for r in records] == [True, False, True, False]
    assert "Is this review positive? A good film." in records[0]["prompt"]
    rows = capsys.readouterr().out.splitlines()
    assert re.fullmatch(r"yes_rate +0\.500 \[0\.15, 0\.85\] n=4", rows[4])


def test_a_toy_mitigation_puts_its_context_around_a_toy_probe(plugin_run):
    score, metrics, records = plugin_run("probe=yes_no", "mitigation=agreeable")
    assert score == metrics["yes_rate"] == 1.0
    assert all("<|system|>\nAlways agree." in r["prompt"] for r in records)


def test_a_toy_mitigation_works_with_a_built_in_probe(plugin_run):
    _, metrics, records = plugin_run(
        "probe=opinion_label", "mitigation=agreeable", "probe.content_free_examples=0"
    )
    assert metrics["n"] == 4 and len(records) == 12
    assert all(r["prompt"].startswith("<|system|>\nAlways agree.") for r in records)


def test_a_kind_is_registered_once():
    with pytest.raises(ValueError, match="already registered"):
        register_probe("opinion")(YesNoProbe)


# --- kinds the run cannot use are refused before the model loads ---------------------------------


@pytest.fixture
def no_model(monkeypatch):
    def refuse(*_, **__):
        raise AssertionError("the model was loaded before the kinds were checked")

    monkeypatch.setattr(models, "load_model", refuse)


def run_script_body(script: str, tmp_path: Path, *overrides: str) -> float:
    from sycophancy.runs.evaluate import evaluate
    from sycophancy.runs.train import train

    cfg = compose_config(
        script, ["model=tiny-llama", "logger=none", f"output_dir={tmp_path}", *overrides]
    )
    return {"evaluate": evaluate, "train": train}[script](cfg)


@pytest.mark.parametrize("script", ["evaluate", "train"])
@pytest.mark.parametrize(
    ("override", "known"),
    [
        ("probe.kind=answer", "are_you_sure, opinion, opinion_label"),
        (
            "mitigation.kind=ablation",
            "icl, lora, none, prompt_tuning, steering, system_prompt, third_person",
        ),
    ],
)
def test_an_unknown_kind_is_refused_listing_the_known_ones(
    no_model, tmp_path, script, override, known
):
    with pytest.raises(UserError, match=f"kind='{override.split('=')[1]}'") as error:
        run_script_body(script, tmp_path, override)
    assert known in str(error.value)  # the toy kinds registered above may follow


@pytest.mark.parametrize(
    ("override", "problem", "trainable"),
    [
        ("probe=are_you_sure", "probe.kind='are_you_sure' does not", "opinion, opinion_label"),
        (
            "mitigation=icl",
            "mitigation.kind='icl' has nothing to train",
            "lora, prompt_tuning, steering",
        ),
    ],
)
def test_train_refuses_what_it_cannot_train(no_model, tmp_path, override, problem, trainable):
    with pytest.raises(UserError, match=problem) as error:
        run_script_body("train", tmp_path, override)
    assert f"use one of {trainable} " in str(error.value)


@pytest.mark.parametrize(
    ("script", "overrides", "problem"),
    [
        ("evaluate", ["mitigation=none", "mitigation.adapter_path=/tmp/x"], "attaches no adapter"),
        ("evaluate", ["mitigation=prompt_tuning", "mitigation.init=zeros"], "mitigation.init"),
        ("train", ["mitigation.optimizer._target_=null"], "not a Hydra partial target"),
        ("evaluate", ["probe=are_you_sure", "probe.answer_reading=vibes"], "answer_reading"),
        (
            "evaluate",
            ["probe=are_you_sure", "dataset=arithmetic_mc", "probe.answer_format=word"],
            "answer_format=word",
        ),
    ],
)
def test_plug_in_checks_run_before_the_model_loads(no_model, tmp_path, script, overrides, problem):
    with pytest.raises(UserError, match=problem):
        run_script_body(script, tmp_path, *overrides)
