"""Typed configs: every shipped config passes its schema; a mistyped key, a wrong type or an
out-of-range count is refused, naming the key, before any model loads."""

from pathlib import Path

import pytest
from helpers import CONF, compose_config
from omegaconf import OmegaConf

from sycophancy.errors import UserError
from sycophancy.mitigations.registry import MITIGATIONS, get_mitigation
from sycophancy.probes.registry import PROBES, get_probe
from sycophancy.schema import check_run_config


def plain(name: str, overrides: list[str]) -> dict:
    return OmegaConf.to_container(compose_config(name, overrides), resolve=True)


def check(cfg: dict) -> None:
    """check_run_config with the schemas the config's probe and mitigation kinds declare."""
    schemas = {
        "probe": get_probe(cfg["probe"]["kind"]).schema,
        "mitigation": get_mitigation(cfg["mitigation"]["kind"]).schema,
    }
    check_run_config(cfg, schemas)


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.mark.parametrize("group", ["model", "dataset", "probe", "mitigation", "logger"])
def test_every_shipped_option_passes_its_schema(group):
    assert options(group), f"no configs in conf/{group}"
    for option in options(group):
        check(plain("evaluate", [f"{group}={option}"]))


@pytest.mark.parametrize("option", ["prompt_tuning", "lora"])
def test_train_config_passes_its_schema(option):
    check(plain("train", [f"mitigation={option}", "trainer=cpu"]))


def test_every_shipped_probe_and_mitigation_kind_declares_a_schema():
    kinds = {
        group: {OmegaConf.load(p)["kind"] for p in (CONF / group).glob("*.yaml")}
        for group in ("probe", "mitigation")
    }
    assert kinds["probe"] <= set(PROBES.kinds()) and kinds["mitigation"] <= set(MITIGATIONS.kinds())
    for kind in kinds["probe"]:
        assert get_probe(kind).schema is not None, kind
    for kind in kinds["mitigation"]:
        assert get_mitigation(kind).schema is not None, kind


@pytest.mark.parametrize(
    "script, override, named",
    [
        ("evaluate", "+dataset.limt=5", "dataset.limt"),
        ("evaluate", "dataset.limit=abc", "dataset.limit"),
        ("evaluate", "dataset.limit=0", "dataset.limit"),
        ("evaluate", "+probe.calibraton=none", "probe.calibraton"),
        ("evaluate", "probe.batch_size=0", "probe.batch_size"),
        ("evaluate", "mitigation=icl", None),
        ("evaluate", "model.chat_template=maybe", "model.chat_template"),
        ("evaluate", "seed=abc", "seed"),
        ("evaluate", "data_seed=1.5", "data_seed"),
        ("train", "training.batch_size=0", "training.batch_size"),
        ("train", "trainer.max_steps=abc", "trainer.max_steps"),
        ("train", "+mitigation.lr=0.1", "mitigation.lr"),
        ("train", "mitigation.num_virtual_tokens=many", "mitigation.num_virtual_tokens"),
    ],
)
def test_bad_values_are_refused_with_the_key_named(script, override, named):
    cfg = plain(script, [override])
    if named is None:  # a valid override, for contrast
        check(cfg)
        return
    with pytest.raises(UserError, match=named.replace(".", r"\.")):
        check(cfg)


def test_a_bad_value_stops_the_run_before_the_model_loads(tmp_path, monkeypatch):
    from sycophancy import models
    from sycophancy.runs.evaluate import evaluate

    def refuse(*_, **__):
        raise AssertionError("the model was loaded before the config was checked")

    monkeypatch.setattr(models, "load_model", refuse)
    cfg = compose_config(
        "evaluate", ["model=tiny-llama", f"output_dir={tmp_path}", "dataset.limit=-3"]
    )
    with pytest.raises(UserError, match="dataset.limit"):
        evaluate(cfg)
    assert not Path(tmp_path / "metrics.json").exists()


def test_result_files_get_the_permissions_of_ordinary_files(tmp_path):
    from sycophancy.files import write_json

    path = write_json(tmp_path / "metrics.json", {"a": 1})
    plain = tmp_path / "plain.txt"
    plain.write_text("x")  # what the umask gives an ordinary file (mkstemp alone gives 0600)
    assert path.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777
    assert path.stat().st_mode & 0o044  # collaborators can read it
