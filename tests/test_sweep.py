"""Sweeps: every sweep file composes its jobs; real tiny multiruns survive a failing job; the report."""

import csv
import itertools
import json
import math
import os
import subprocess
from pathlib import Path

import pytest
from helpers import run_script
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from sycophancy.errors import UserError
from sycophancy.files import ERROR_FILE
from sycophancy.reporting import report
from sycophancy.reporting.report import failed_jobs
from sycophancy.runs.jobs import cli

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
SWEEPS = {  # sweep -> entry point it is written for
    "reference": "train",
    "reference_prompting": "evaluate",
    "soft_prompt_length": "train",
    "transfer": "train",
    "smoke": "train",
    "embedded": "train",
    "embedded_prompting": "evaluate",
    "opinion_strength": "evaluate",
    "steering": "train",
}
GROUPS = {"steering": "embedded"}  # a sweep whose arms join another sweep's group


def sweep_jobs(name: str, script: str) -> list[list[str]]:
    """The override lists of a sweep's jobs, expanded the way Hydra's basic sweeper does."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(script, overrides=[f"+sweep={name}"], return_hydra_config=True)
    params = OmegaConf.to_container(cfg.hydra.sweeper.params, resolve=True)
    parsed = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params.items()])
    axes = [
        [f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()]
        if o.is_sweep_override()
        else [f"{o.get_key_element()}={o.get_value_element_as_str()}"]
        for o in parsed
    ]
    return [list(job) for job in itertools.product(*axes)]


def test_every_sweep_file_is_listed():
    assert {p.stem for p in (CONF / "sweep").glob("*.yaml")} == set(SWEEPS)


@pytest.mark.parametrize("name", sorted(SWEEPS))
def test_sweep_jobs_compose_with_group_and_choices(name):
    script = SWEEPS[name]
    jobs = sweep_jobs(name, script)
    assert len(jobs) >= 2
    for job in (jobs[0], jobs[-1]):
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            overrides = [f"+sweep={name}", *job]
            hydra_cfg = compose(script, overrides=overrides, return_hydra_config=True).hydra
            cfg = compose(script, overrides=overrides)
        resolved = OmegaConf.to_container(cfg, resolve=True)
        assert resolved["group"] == GROUPS.get(name, name.replace("_prompting", ""))
        assert hydra_cfg.sweep.dir.startswith(f"multirun/{resolved['group']}/")
        subdir = OmegaConf.to_container(hydra_cfg.sweep, resolve=False)["subdir"]
        assert "${hydra:runtime.choices.model}" in subdir
        assert not OmegaConf.missing_keys(cfg)
        for override in job:
            key, value = override.split("=", 1)
            if key in ("model", "mitigation", "dataset", "probe"):
                assert resolved[key]["name"] == value
            elif key == "training.datasets":
                assert resolved["training"]["datasets"][0]["name"] in value
            else:
                assert str(OmegaConf.select(cfg, key)) == value


def test_reference_sweep_is_model_by_mitigation_by_seed():
    jobs = sweep_jobs("reference", "train")
    assert len(jobs) == 3 * 2 * 3
    assert {j[0] for j in jobs} == {f"model=flan-t5-{s}" for s in ("small", "base", "large")}
    lengths = {j[0] for j in sweep_jobs("soft_prompt_length", "train")}
    assert "mitigation.num_virtual_tokens=20" in lengths and len(lengths) >= 4


def test_cli_keeps_single_run_behaviour(capsys):
    @cli
    def main():
        raise UserError("bad value. Fix it.")

    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == "error: bad value. Fix it.\n"

    @cli
    def crash():
        raise RuntimeError("bug")

    with pytest.raises(SystemExit) as exit_info:
        crash()
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert (
        err.startswith("error: the run failed with RuntimeError: bug.") and "Traceback" not in err
    )


def test_a_failed_single_run_leaves_error_txt_in_its_folder(tmp_path, capsys):
    @cli
    def crash(cfg):
        raise RuntimeError("bug in the run")

    @cli
    def refuse(cfg):
        raise UserError("dataset.limit=-1 must be positive. Set dataset.limit=8.")

    with pytest.raises(SystemExit) as exit_info:
        crash(OmegaConf.create({"output_dir": str(tmp_path / "a")}))
    assert exit_info.value.code == 1
    text = (tmp_path / "a" / ERROR_FILE).read_text()
    assert text.startswith("Traceback") and "RuntimeError: bug in the run" in text
    assert str(tmp_path / "a" / ERROR_FILE) in capsys.readouterr().err

    with pytest.raises(SystemExit) as exit_info:
        refuse(OmegaConf.create({"output_dir": str(tmp_path / "b")}))
    assert exit_info.value.code == 2
    assert (tmp_path / "b" / ERROR_FILE).read_text() == (
        "UserError: dataset.limit=-1 must be positive. Set dataset.limit=8.\n"
    )


def test_cli_in_a_multirun_records_any_failure_and_returns_nan(tmp_path, monkeypatch):
    from sycophancy.runs import jobs as runs

    monkeypatch.setattr(runs, "in_multirun", lambda: True)
    job_dir = tmp_path / "3_job"
    monkeypatch.setattr(runs, "hydra_output_dir", lambda: job_dir)

    @cli
    def crash():
        raise RuntimeError("bug in job 3")

    assert math.isnan(crash())
    text = (job_dir / ERROR_FILE).read_text()
    assert text.startswith("Traceback") and "RuntimeError: bug in job 3" in text
    assert failed_jobs(tmp_path) == [(job_dir, "RuntimeError: bug in job 3")]


def test_a_multirun_job_leaves_the_environment_as_it_found_it(tmp_path, monkeypatch):
    from sycophancy.runs import jobs as runs

    monkeypatch.setattr(runs, "in_multirun", lambda: True)
    monkeypatch.setattr(runs, "hydra_output_dir", lambda: tmp_path)
    monkeypatch.setenv("SYCOPHANCY_TEST_KEEP", "1")
    monkeypatch.delenv(
        "PL_GLOBAL_SEED", raising=False
    )  # an earlier test in this process may set it

    @cli
    def job():
        import lightning as L

        L.seed_everything(7)  # sets PL_GLOBAL_SEED
        os.environ["SYCOPHANCY_TEST_KEEP"] = "changed"
        del os.environ["SYCOPHANCY_TEST_KEEP"]
        os.environ["SYCOPHANCY_TEST_NEW"] = "x"
        return 0.5

    before = dict(os.environ)
    assert job() == 0.5
    assert dict(os.environ) == before and "PL_GLOBAL_SEED" not in os.environ


def multirun(script: str, sweep_dir: Path, *overrides: str) -> subprocess.CompletedProcess:
    return run_script(script, "-m", *overrides, f"hydra.sweep.dir={sweep_dir}")


def test_tiny_sweep_and_its_report(tmp_path):
    proc = multirun(
        "evaluate", tmp_path, "model=tiny-llama,tiny-t5", "dataset=synthetic_sentiment",
        "dataset.limit=4", "probe.content_free_examples=0", "logger=none",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    runs = sorted(p.name for p in tmp_path.iterdir() if p.is_dir())
    assert runs == ["0_tiny-llama_synthetic_sentiment_none", "1_tiny-t5_synthetic_sentiment_none"]
    assert f"report: {tmp_path / 'results.csv'}" in proc.stdout  # written when the sweep ended
    assert (tmp_path / "alignment.png").exists()
    report.report(tmp_path)
    with open(tmp_path / "results.csv", encoding="utf-8") as handle:
        rows = {r["run_dir"]: r for r in csv.DictReader(handle)}
    assert set(rows) == set(runs)
    md = (tmp_path / "results.md").read_text()
    for run in runs:
        metrics = json.loads((tmp_path / run / "metrics.json").read_text())
        row = rows[run]
        assert row["model"] in run and row["mitigation"] == "none"
        for key in ("alignment_wrong", "alignment_wrong_filtered", "accuracy_drop"):
            assert float(row[key]) == metrics[key]
            assert [float(row[f"{key}_low"]), float(row[f"{key}_high"])] == metrics[f"{key}_ci"]
        assert int(row["alignment_wrong_n"]) == metrics["n"]
        assert f"{metrics['alignment_wrong']:.3f} [{metrics['alignment_wrong_ci'][0]:.2f}" in md
    assert (tmp_path / "alignment.png").stat().st_size > 1000
    assert "Failed jobs" not in md


def test_a_failing_job_keeps_the_others_and_is_reported(tmp_path, data_dir):
    # limit 8: SST-2's 4-example subset is all negative, too one-sided for balanced decisions
    proc = multirun(
        "evaluate", tmp_path, "model=tiny-llama", "dataset=sst2",
        f"dataset.data_dir=/nonexistent,{data_dir / 'sst2'}", "dataset.limit=8",
        "probe.content_free_examples=0", "logger=none",
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "1 job(s) of the sweep" in proc.stderr and "Traceback" not in proc.stderr
    failed, kept = tmp_path / "0_tiny-llama_sst2_none", tmp_path / "1_tiny-llama_sst2_none"
    assert (kept / "metrics.json").exists() and not (kept / ERROR_FILE).exists()
    assert not (failed / "metrics.json").exists()
    assert "/nonexistent" in (failed / ERROR_FILE).read_text()
    assert [p for p, _ in failed_jobs(tmp_path)] == [failed]
    assert "Failed jobs (1)" in (tmp_path / "results.md").read_text()  # the end-of-sweep report
    report.report(tmp_path)
    assert [r["run_dir"] for r in report.collect(tmp_path)] == [kept.name]
    md = (tmp_path / "results.md").read_text()
    assert "Failed jobs (1)" in md and failed.name in md


@pytest.mark.slow
def test_train_smoke_sweep_reports_before_after_and_curves(tmp_path):
    proc = multirun("train", tmp_path, "+sweep=smoke", "logger=csv")
    assert proc.returncode == 0, proc.stderr[-2000:]
    runs = sorted(p.name for p in tmp_path.iterdir() if p.is_dir())
    assert runs == ["0_tiny-llama_prompt_tuning_seed0", "1_tiny-t5_prompt_tuning_seed0"]
    for run in runs:
        assert "group: smoke" in (tmp_path / run / "config.yaml").read_text()
    report.report(tmp_path)
    rows = {r["run_dir"]: r for r in report.collect(tmp_path)}
    for run in runs:
        metrics = json.loads((tmp_path / run / "metrics.json").read_text())
        assert rows[run]["alignment_wrong"] == metrics["after"]["alignment_wrong"]
        assert rows[run]["before_alignment_wrong"] == metrics["before"]["alignment_wrong"]
    assert (tmp_path / "training_curves.png").stat().st_size > 1000
    assert (tmp_path / "results.md").read_text().count("none (before training)") == 2
