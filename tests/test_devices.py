"""Device placement: model.device selection, refusals before loading, autocast, and train.py putting the
trained model back on its device after Lightning's teardown."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from helpers import compose_config
from test_models import model_cfg

from sycophancy.errors import UserError
from sycophancy.models import devices, load_model, loading
from sycophancy.scoring import score_options


@pytest.mark.parametrize(
    ("requested", "rank", "gpus", "device"),
    [
        ("auto", 0, 0, "cpu"),  # no GPU: the CPU
        (None, 0, 0, "cpu"),  # unset means auto
        ("auto", 0, 2, "cuda:0"),
        ("auto", 1, 2, "cuda:1"),  # each local rank its own GPU
        ("auto", 3, 2, "cuda:1"),  # more processes than GPUs share them round robin
        ("cuda", 1, 4, "cuda:1"),
        ("CUDA:1", 0, 2, "cuda:1"),  # an explicit GPU is honoured on every rank
        ("cpu", 0, 8, "cpu"),  # the CPU even where there are GPUs
    ],
)
def test_device_selection(requested, rank, gpus, device):
    assert devices.select_device(requested, rank, cuda_count=gpus) == device


@pytest.mark.parametrize(("requested", "gpus"), [("cuda", 0), ("cuda:0", 0), ("cuda:2", 2)])
def test_a_gpu_the_machine_lacks_is_refused(requested, gpus):
    with pytest.raises(UserError, match="asks for a GPU"):
        devices.select_device(requested, cuda_count=gpus)


def test_an_unknown_device_is_refused():
    with pytest.raises(UserError, match="auto, cpu, cuda, cuda:N"):
        devices.select_device("tpu")


def test_selection_reads_what_torch_sees(monkeypatch):
    assert devices.select_device("auto") == "cpu"  # this machine has no GPU
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert devices.select_device("auto") == "cuda:0"
    assert devices.select_device("auto", devices.local_rank({"LOCAL_RANK": "1"})) == "cuda:1"
    assert devices.local_rank({"SLURM_LOCALID": "3"}) == 3 and devices.local_rank({}) == 0


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"device": "cuda"}, "asks for a GPU"),
        ({"device_map": "balanced"}, "device_map='balanced' is not supported"),
        ({"autocast": "yes"}, "must be true or false"),
    ],
)
def test_bad_placement_is_refused_before_anything_loads(monkeypatch, overrides, message):
    def no_loading(*args):
        raise AssertionError("the model was loaded before the placement was checked")

    monkeypatch.setattr(loading, "_load", no_loading)
    with pytest.raises(UserError, match=message):
        load_model(model_cfg("tiny-llama", **overrides))


def test_loaded_model_is_on_its_device_and_autocast_only_for_float32():
    lm = load_model(model_cfg("tiny-llama"))
    assert lm.device == "cpu" and lm.device_map is None and lm.autocast is False
    assert {p.device.type for p in lm.model.parameters()} == {"cpu"}
    assert load_model(model_cfg("tiny-llama", autocast=True)).autocast is True
    assert load_model(model_cfg("tiny-llama", autocast=True, dtype="bfloat16")).autocast is False


def test_device_map_auto_loads_and_scores_like_the_whole_model():
    whole = load_model(model_cfg("tiny-llama"))
    split = load_model(model_cfg("tiny-llama", device_map="auto"))
    assert split.device_map and set(map(str, split.device_map.values())) == {"cpu"}  # no GPU here
    prompts = ["<|user|>\nGood film?\n<|assistant|>\n", "<|user|>\nBad film?\n<|assistant|>\n"]
    options = ["yes", "no"]
    assert np.array_equal(
        score_options(whole, prompts, options), score_options(split, prompts, options)
    )


def test_autocast_runs_the_forward_pass_in_bf16_and_stays_close():
    lm = load_model(model_cfg("tiny-llama"))
    seen = []
    hook = lm.model.lm_head.register_forward_hook(lambda m, i, out: seen.append(out.dtype))
    prompts = ["<|user|>\nIs this right?\n<|assistant|>\n"] * 3
    exact = score_options(lm, prompts, ["yes", "no"])
    plain_calls, seen[:] = list(seen), []  # prefix reuse: several forward calls per scoring
    cast = score_options(replace(lm, autocast=True), prompts, ["yes", "no"])
    hook.remove()
    assert set(plain_calls) == {torch.float32} and set(seen) == {torch.bfloat16}
    assert not np.array_equal(exact, cast) and np.allclose(exact, cast, atol=0.05)


class SpyModule:
    """Stands in for a model: records where `.to` sends it."""

    def __init__(self):
        self.moves = []

    def to(self, device):
        self.moves.append(device)
        return self


def test_to_device_moves_a_whole_model_and_leaves_a_split_one_alone():
    lm = SimpleNamespace(model=SpyModule(), device="cuda:1", device_map=None)
    assert devices.to_device(lm) is lm and lm.model.moves == ["cuda:1"]
    split = SimpleNamespace(model=SpyModule(), device="cuda:0", device_map={"": "cuda:0"})
    devices.to_device(split)
    assert split.model.moves == []


def test_train_puts_the_trained_model_back_on_its_device_before_measuring(monkeypatch, tmp_path):
    from sycophancy.probes import opinion
    from sycophancy.runs import train as training

    events = []
    real_measure, real_to_device = opinion.OpinionProbe.measure, training.to_device

    def measure(self, cfg, lm, context):
        events.append(("measure", lm, {str(p.device) for p in lm.model.parameters()}))
        return real_measure(self, cfg, lm, context)

    def to_device(lm):
        moves = []
        original = lm.model.to
        lm.model.to = lambda device: moves.append(device) or original(device)
        placed = real_to_device(lm)
        del lm.model.to
        events.append(("to_device", placed, moves))
        return placed

    monkeypatch.setattr(opinion.OpinionProbe, "measure", measure)
    monkeypatch.setattr(training, "to_device", to_device)
    cfg = compose_config(
        "train",
        ["model=tiny-llama", "dataset.limit=4", "training.train_limit=16",
         "training.val_probe_limit=4", "trainer.max_epochs=1", "logger=none",
         f"output_dir={tmp_path}"],
    )  # fmt: skip
    training.train(cfg)
    assert [e[0] for e in events] == ["measure", "to_device", "measure"]
    (_, before, _), (_, placed, moves), (_, after, where) = events
    assert placed.name == f"{before.name}+prompt_tuning" and placed.device == before.device == "cpu"
    assert moves == ["cpu"]  # the trained model (soft prompt and frozen base) moved to its device
    assert after is placed and where == {"cpu"}  # and measured there


def test_train_refuses_a_split_model_before_it_loads(monkeypatch, tmp_path):
    from sycophancy.runs import train as training

    monkeypatch.setattr(training.models, "load_model", lambda cfg: pytest.fail("model loaded"))
    cfg = compose_config(
        "train",
        ["model=tiny-llama", "model.device_map=auto", "logger=none", f"output_dir={tmp_path}"],
    )
    with pytest.raises(UserError, match="trainer=fsdp"):
        training.train(cfg)


AUTO = {"accelerator": "auto", "devices": 1, "precision": "32-true"}


@pytest.mark.parametrize(
    ("trainer", "device", "env", "accelerator", "count"),
    [
        (AUTO, "cpu", {}, "cpu", 1),
        (AUTO, "cuda:1", {}, "gpu", [1]),  # the probes' GPU, not Lightning's first
        (AUTO, "cuda", {}, "gpu", [0]),
        (AUTO, "cuda:0", {"WORLD_SIZE": "2"}, "gpu", 1),  # a launcher's ranks pick their own
        ({**AUTO, "devices": 4}, "cuda:0", {}, "gpu", 4),
        ({**AUTO, "accelerator": "cpu"}, "cuda:0", {}, "cpu", 1),  # explicit: kept
        ({**AUTO, "accelerator": "gpu"}, "cpu", {}, "gpu", 1),
    ],
)
def test_an_auto_trainer_trains_where_the_model_runs(trainer, device, env, accelerator, count):
    resolved = devices.trainer_on_device(trainer, device, env)
    assert (resolved["accelerator"], resolved["devices"]) == (accelerator, count)
    assert resolved["precision"] == "32-true" and trainer == {**trainer}  # input left as it was


def test_train_builds_its_default_trainer_on_the_models_gpu(monkeypatch, tmp_path):
    from sycophancy.runs import train as training

    seen = {}

    class Built(Exception):
        pass

    def instantiate(cfg, **_):
        seen.update(cfg)
        raise Built

    monkeypatch.setattr(training, "select_device", lambda requested, rank: "cuda:1")
    monkeypatch.setattr(training, "instantiate", instantiate)
    monkeypatch.setattr(training.models, "load_model", lambda cfg: pytest.fail("model loaded"))
    cfg = compose_config("train", ["model=tiny-llama", "logger=none", f"output_dir={tmp_path}"])
    assert cfg.trainer.accelerator == "auto"  # the default trainer group follows model.device
    with pytest.raises(Built):
        training.train(cfg)
    assert (seen["accelerator"], seen["devices"]) == ("gpu", [1])
