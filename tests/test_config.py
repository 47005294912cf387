"""Every config group composes, and bad names fail with a short message instead of a traceback."""

import subprocess
from pathlib import Path

import pytest
from helpers import run_script
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
GROUPS = ("model", "dataset", "probe", "mitigation", "logger")
REQUIRED_BY_CHOICE = {  # these need a user-given path
    ("model", "local"),
    ("dataset", "local"),
    ("dataset", "perez_sycophancy"),
    ("dataset", "sycophancy_eval"),
}


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.mark.parametrize("config_name", ["evaluate", "train"])
@pytest.mark.parametrize("group", GROUPS)
def test_every_option_composes(config_name, group):
    assert (CONF / f"{config_name}.yaml").is_file(), f"conf/{config_name}.yaml is missing"
    assert options(group), f"conf/{group} is empty"
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        for choice in options(group):
            cfg = compose(config_name=config_name, overrides=[f"{group}={choice}"])
            missing = OmegaConf.missing_keys(cfg)
            if (group, choice) in REQUIRED_BY_CHOICE:
                assert missing, f"{group}={choice} should require a path"
            else:
                assert not missing, f"{group}={choice} leaves {missing} unset"
            assert cfg[group].name == choice, (
                f"conf/{group}/{choice}.yaml names itself {cfg[group].name}"
            )


def test_expected_options_exist():
    assert {
        "flan-t5-small",
        "flan-t5-base",
        "flan-t5-large",
        "flan-t5-xl",
        "smollm2-135m-instruct",
        "tiny-t5",
        "tiny-llama",
    } <= set(options("model"))
    assert {
        "sst2",
        "synthetic_sentiment",
        "addition",
        "rotten_tomatoes",
        "snli",
        "trec",
        "ag_news",
    } <= set(options("dataset"))
    assert {"opinion", "opinion_label"} <= set(options("probe"))
    assert {"none", "icl", "system_prompt"} <= set(options("mitigation"))


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return run_script("evaluate", *args, timeout=120)


def test_unknown_model_lists_valid_ones():
    out = run_cli("model=gpt-17")
    assert out.returncode != 0
    assert "Traceback" not in out.stderr
    assert "smollm2-135m-instruct" in out.stderr and "gpt-17" in out.stderr


def test_missing_data_dir_is_one_paragraph(tmp_path):
    out = run_cli(
        "model=tiny-llama",
        "dataset=sst2",
        f"dataset.data_dir={tmp_path / 'nowhere'}",
        "logger=none",
        f"output_dir={tmp_path / 'run'}",
    )
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    assert "nowhere" in out.stderr
