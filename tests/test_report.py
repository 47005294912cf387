"""sycophancy.report on hand-made run folders: rows, table, CSV, plots, failures, the empty case."""

import csv
import json
from pathlib import Path

import pytest
from matplotlib.image import imread

from sycophancy.errors import UserError
from sycophancy.files import write_json, write_text
from sycophancy.reporting import report, tradeoffs


def opinion_metrics(alignment: float, n: int = 20) -> dict:
    return {
        "calibration": "balanced",
        "n": n,
        "n_filtered": n - 5,
        "alignment_wrong": alignment,
        "alignment_wrong_ci": [alignment - 0.1, alignment + 0.1],
        "alignment_wrong_filtered": alignment / 2,
        "alignment_wrong_filtered_ci": [0.05, 0.4],
        "accuracy_drop": 0.125,
        "accuracy_drop_ci": [0.0, 0.25],
        "acc_no_opinion": 0.9,
    }


def make_run(root: Path, name: str, cfg: dict, metrics: dict, curves: str | None = None) -> Path:
    run = root / name
    write_text(run / "config.yaml", json.dumps(cfg))  # JSON is YAML
    write_json(run / "metrics.json", metrics)
    if curves is not None:
        write_text(run / "csv" / "metrics.csv", curves)
    return run


def config(model: str, mitigation: str, seed: int = 0, probe: str = "opinion_label") -> dict:
    return {
        "model": {"name": model},
        "dataset": {"name": "synthetic_sentiment"},
        "probe": {"name": probe, "kind": probe},
        "mitigation": {"name": mitigation, "kind": mitigation, "num_virtual_tokens": 20},
        "seed": seed,
        "data_seed": 0,
        "group": "test",
    }


CURVES = (
    "epoch,step,train/loss,val/loss,val/alignment_wrong\n"
    "0,0,,2.0,0.5\n0,1,1.9,,\n1,3,1.5,,\n1,3,,1.4,0.3\n"
)


@pytest.fixture
def sweep(tmp_path) -> Path:
    make_run(tmp_path, "0_tiny-llama_none", config("tiny-llama", "none"), opinion_metrics(0.6))
    make_run(tmp_path, "1_tiny-t5_icl", config("tiny-t5", "icl"), opinion_metrics(0.4, n=16))
    trained = {
        "run": "x",
        "before": opinion_metrics(0.7),
        "after": opinion_metrics(0.2),
        "delta": {"alignment_wrong": -0.5, "alignment_wrong_ci": [-0.7, -0.3]},
    }
    make_run(tmp_path, "2_train", config("tiny-llama", "prompt_tuning", 1), trained, CURVES)
    ays = {
        "n": 10,
        "flip_rate": 0.3,
        "flip_rate_ci": [0.1, 0.6],
        "flip_rate_n": 9,
        "acc_first": 0.5,
    }
    make_run(tmp_path, "3_ays", config("tiny-llama", "none", probe="are_you_sure"), ays)
    write_text(tmp_path / "4_broken" / "error.txt", "Traceback ...\nUserError: no such folder\n")
    return tmp_path


def test_rows_carry_the_metrics_json_numbers(sweep):
    rows = {r["run_dir"]: r for r in report.collect(sweep)}
    assert set(rows) == {"0_tiny-llama_none", "1_tiny-t5_icl", "2_train", "3_ays"}
    eval_row = rows["1_tiny-t5_icl"]
    assert (eval_row["model"], eval_row["mitigation"], eval_row["seed"]) == ("tiny-t5", "icl", 0)
    assert eval_row["alignment_wrong"] == 0.4 and eval_row["alignment_wrong_n"] == 16
    assert eval_row["alignment_wrong_low"] == pytest.approx(0.3)
    assert eval_row["alignment_wrong_filtered_n"] == 11
    assert eval_row["num_virtual_tokens"] is None  # only prompt tuning has a length
    trained = rows["2_train"]
    assert trained["stage"] == "after" and trained["alignment_wrong"] == 0.2
    assert trained["before_alignment_wrong"] == 0.7 and trained["delta_alignment_wrong"] == -0.5
    assert trained["num_virtual_tokens"] == 20
    ays = rows["3_ays"]
    assert (ays["flip_rate"], ays["flip_rate_n"], ays["flip_rate_high"]) == (0.3, 9, 0.6)
    assert "alignment_wrong" not in ays


def test_report_writes_table_csv_and_decodable_plots(sweep):
    written = report.report(sweep)
    assert set(written) == {"csv", "md", "alignment", "curves", "tradeoff"}
    for name in ("alignment.png", "training_curves.png", "tradeoff.png"):
        image = imread(sweep / name)
        assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    with open(sweep / "results.csv", encoding="utf-8") as handle:
        table = {r["run_dir"]: r for r in csv.DictReader(handle)}
    assert set(table) == {"0_tiny-llama_none", "1_tiny-t5_icl", "2_train", "3_ays"}
    for run, row in table.items():
        metrics = json.loads((sweep / run / "metrics.json").read_text())
        metrics = metrics.get("after", metrics)
        for key in ("alignment_wrong", "flip_rate"):
            if key in metrics:
                assert float(row[key]) == metrics[key]
                assert float(row[f"{key}_low"]) == metrics[f"{key}_ci"][0]
    md = (sweep / "results.md").read_text()
    assert "| tiny-t5 | icl |" in md and "0.400 [0.30, 0.50]" in md
    assert "| tiny-llama | prompt_tuning |" in md and "0.200 [0.10, 0.30]" in md
    assert "none (before training)" in md and "0.700 [0.60, 0.80]" in md
    assert "+0.125 [+0.00, +0.25]" in md and "0.300 [0.10, 0.60]" in md
    assert "Failed jobs (1)" in md and "`4_broken`: UserError: no such folder" in md
    assert not list(sweep.glob(".*.tmp"))


def test_curves_read_the_logged_columns(sweep):
    curves = report.read_curves(sweep / "2_train")
    assert curves["train/loss"] == [(1.0, 1.9), (3.0, 1.5)]
    assert curves["val/alignment_wrong"] == [(0.0, 0.5), (3.0, 0.3)]
    assert report.read_curves(sweep / "1_tiny-t5_icl") == {}


def test_failures_ignore_jobs_that_finished(sweep):
    write_text(sweep / "0_tiny-llama_none" / "error.txt", "stale\n")
    assert report.failures(sweep) == [{"run_dir": "4_broken", "error": "UserError: no such folder"}]


def test_no_runs_is_a_user_error(tmp_path, capsys):
    write_text(tmp_path / "job" / "error.txt", "UserError: boom\n")
    with pytest.raises(UserError, match="No runs under .*1 job\\(s\\) failed"):
        report.report(tmp_path)
    assert report.main([str(tmp_path / "missing")]) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert not (tmp_path / "results.csv").exists()


def test_main_prints_the_table(sweep, capsys):
    assert report.main([str(sweep)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("| model | mitigation |") and "results.csv" in out


def test_settings_that_vary_within_a_mitigation_name_the_arms(tmp_path):
    for i, lr in enumerate((0.01, 0.03)):
        cfg = config("tiny-llama", "prompt_tuning", seed=0)
        cfg["mitigation"]["optimizer"] = {"lr": lr}
        trained = {"before": opinion_metrics(0.7), "after": opinion_metrics(0.3 + i / 10)}
        make_run(tmp_path, f"{i}_pt", cfg, trained)
    lora = config("tiny-llama", "lora")
    lora["mitigation"]["optimizer"] = {"lr": 0.001}
    make_run(
        tmp_path, "2_lora", lora, {"before": opinion_metrics(0.7), "after": opinion_metrics(0.5)}
    )
    rows = report.collect(tmp_path)
    assert report.arm_settings(rows) == ["lr"]  # lora's single lr does not split anything
    arms = {report.arm(r, ["lr"]) for r in rows}
    assert arms == {"prompt_tuning lr0.01", "prompt_tuning lr0.03", "lora lr0.001"}
    md = report.markdown(rows)
    assert md.startswith(
        "| model | mitigation | lr | opinion alignment |"
    )  # one soft-prompt length
    assert "| tiny-llama | prompt_tuning | 0.01 | 0.300 [0.20, 0.40] |" in md
    assert (
        "accuracy, no opinion" in md and "0.900 [" not in md
    )  # no interval in the metrics: none shown


def test_each_metric_is_counted_by_its_own_denominator():
    parsed_only = {
        **opinion_metrics(0.6),
        "alignment_wrong_n": 18,
        "alignment_wrong_filtered_n": 11,
    }
    cols = report.metric_columns(parsed_only)
    assert (cols["alignment_wrong_n"], cols["alignment_wrong_filtered_n"]) == (18, 11)
    assert cols["accuracy_drop_n"] == 20  # a metrics.json without `accuracy_drop_n`: its `n`


def test_alignment_by_opinion_strength_and_persona(tmp_path):
    # a strength x persona sweep: the table names both axes and the plot shows them
    for i, (strength, persona, value) in enumerate(
        [("hedged", "none", 0.3), ("plain", "none", 0.5), ("authoritative", "none", 0.7),
         ("hedged", "professor", 0.4), ("plain", "professor", 0.6),
         ("authoritative", "professor", 0.8)]
    ):  # fmt: skip
        cfg = config("tiny-llama", "none")
        cfg["probe"].update(strength=strength, persona=persona)
        make_run(tmp_path, f"{i}_{strength}_{persona}", cfg, opinion_metrics(value))
    rows = report.collect(tmp_path)
    assert {(r["strength"], r["persona"], r["alignment_wrong"]) for r in rows} == {
        ("hedged", "none", 0.3), ("plain", "none", 0.5), ("authoritative", "none", 0.7),
        ("hedged", "professor", 0.4), ("plain", "professor", 0.6),
        ("authoritative", "professor", 0.8),
    }  # fmt: skip
    written = report.report(tmp_path)
    header = written["md"].read_text().splitlines()[0]
    assert "| strength | persona |" in header
    image = imread(written["opinion_strength"])
    assert image.shape[0] > 100 and image.shape[1] > 300


def test_no_strength_plot_without_an_axis_that_varies(sweep):
    assert "opinion_strength" not in report.report(sweep)
    rows = report.collect(sweep)
    opinion = [r for r in rows if r["probe"] in report.OPINION_PROBES]
    assert opinion and {(r["strength"], r["persona"]) for r in opinion} == {("plain", "professor")}
    assert all(r["strength"] is None for r in rows if r not in opinion)  # no such axis there


def rated(faw: float, acc: float, contrarian: float, half: float = 0.1) -> dict:
    """Filtered alignment, accuracy without opinion and contrarian rate, each ± `half`."""
    out = {"n": 100, "n_filtered": 60}
    for key, value in (
        ("alignment_wrong_filtered", faw), ("acc_no_opinion", acc), ("contrarian_rate", contrarian),
    ):  # fmt: skip
        out[key], out[f"{key}_ci"], out[f"{key}_n"] = value, [value - half, value + half], 60
    return out


def steering_config(layer: int, multiplier: float, seed: int) -> dict:
    cfg = config("smollm2", "steering", seed)
    cfg["mitigation"] = {"name": "steering", "kind": "steering", "layer": layer}
    cfg["mitigation"]["multiplier"] = multiplier
    return cfg


@pytest.fixture
def steering_sweep(tmp_path) -> Path:
    make_run(tmp_path, "0_none", config("smollm2", "none"), rated(0.4, 0.6, 0.05))
    make_run(tmp_path, "1_icl", config("smollm2", "icl"), rated(0.2, 0.5, 0.25, half=0.05))
    for i, (layer, multiplier, seed, faw) in enumerate(
        [(5, 2.0, 0, 0.35), (5, 2.0, 1, 0.25), (5, 4.0, 0, 0.2), (10, 2.0, 0, 0.3)]
    ):
        trained = {"before": rated(0.4, 0.6, 0.05), "after": rated(faw, 0.58, 0.06)}
        make_run(tmp_path, f"{2 + i}_steer", steering_config(layer, multiplier, seed), trained)
    return tmp_path


def test_tradeoffs_are_gains_and_costs_against_the_untouched_model(steering_sweep):
    rows = report.study_rows(report.collect(steering_sweep))
    points = {p["arm"]: p for p in tradeoffs.tradeoff_rows(rows, lambda r: r["run_dir"])}
    assert set(points) == {"1_icl", "2_steer", "3_steer", "4_steer", "5_steer"}
    icl = points["1_icl"]
    # reduction 0.4 - 0.2 = 0.2; Newcombe: 0.2 - hypot(0.4 - 0.3, 0.25 - 0.2) = 0.2 - 0.111803,
    # 0.2 + hypot(0.5 - 0.4, 0.2 - 0.15) = 0.2 + 0.111803
    assert icl["reduction"] == pytest.approx(0.2)
    assert icl["reduction_ci"] == pytest.approx([0.088197, 0.311803], abs=1e-6)
    # accuracy lost 0.6 - 0.5 = 0.1: 0.1 -/+ hypot(0.1, 0.05); contrarian gained 0.25 - 0.05 = 0.2
    assert icl["acc_no_opinion"] == pytest.approx(0.1)
    assert icl["acc_no_opinion_ci"] == pytest.approx([0.1 - 0.111803, 0.1 + 0.111803], abs=1e-6)
    assert icl["contrarian_rate"] == pytest.approx(0.2)
    assert icl["contrarian_rate_ci"] == pytest.approx([0.2 - 0.111803, 0.2 + 0.111803], abs=1e-6)
    # a train.py arm against its own before: 0.4 - 0.2 = 0.2 -/+ hypot(0.1, 0.1)
    steer = points["4_steer"]
    assert steer["reduction"] == pytest.approx(0.2)
    assert steer["reduction_ci"] == pytest.approx([0.2 - 0.141421, 0.2 + 0.141421], abs=1e-6)
    assert steer["acc_no_opinion"] == pytest.approx(0.02)
    assert steer["contrarian_rate"] == pytest.approx(0.01)


def test_steering_arms_are_named_by_layer_and_multiplier_and_plotted(steering_sweep):
    rows = report.collect(steering_sweep)
    steer = [r for r in rows if r["mitigation"] == "steering"]
    assert {(r["layer"], r["multiplier"]) for r in steer} == {(5, 2.0), (5, 4.0), (10, 2.0)}
    assert report.arm_settings(rows) == ["layer", "multiplier"]
    assert {report.arm(r, ["layer", "multiplier"]) for r in steer} == {
        "steering L5 x2.0", "steering L5 x4.0", "steering L10 x2.0",
    }  # fmt: skip
    written = report.report(steering_sweep)
    assert {"tradeoff", "steering"} <= set(written)
    for name in ("tradeoff.png", "steering.png"):
        image = imread(steering_sweep / name)
        assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 300
    md = (steering_sweep / "results.md").read_text()
    assert "| model | mitigation | layer | multiplier | seed |" in md
    assert "| smollm2 | steering | 5 | 2.0 | 1 |" in md


def test_no_steering_arms_no_steering_plot(sweep):
    assert "steering" not in report.report(sweep)
    assert not (sweep / "steering.png").exists()
