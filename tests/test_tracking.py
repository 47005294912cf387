"""Experiment tracking: W&B tables, run status, an unreachable server, the sweep report upload."""

import json

import pytest
from helpers import compose_config, run_script

from sycophancy.files import read_jsonl
from sycophancy.metrics import flip_metrics
from sycophancy.reporting import tracking

UNREACHABLE = {  # an online W&B that refuses connections: the run must still finish, offline
    "WANDB_MODE": "online",
    "WANDB_BASE_URL": "http://127.0.0.1:9",
    "WANDB_API_KEY": "a" * 40,
    "WANDB_SILENT": "true",
}


def test_flattening_logs_every_count_and_splits_declared_intervals():
    metrics = flip_metrics([0, 1, None], [1, 1, 0], [0, 1, 1])
    flat = tracking.flatten_metrics(
        {"after": metrics, "population": "all", "offsets": [0.5, -0.5]}, "eval/"
    )
    rates = ("acc_first", "acc_final", "flip_rate", "correct_to_wrong", "wrong_to_correct")
    counts = ("n", "n_unparsed_first", "n_unparsed_final", "n_unparsed")
    assert set(flat) == {f"eval/after/{k}" for k in counts} | {
        f"eval/after/{rate}{part}" for rate in rates for part in ("", "_n", "_ci_low", "_ci_high")
    }  # a pair of numbers that is no declared metric's interval is not an interval
    assert flat["eval/after/acc_first_ci_low"] == metrics["acc_first_ci"][0]
    assert flat["eval/after/acc_first_n"] == 2.0


def test_table_rows_keep_every_column_and_flatten_nested_values():
    records = [
        {"example_id": "a", "prediction": {"balanced": 1}, "gold": 1},
        {"example_id": "b", "gold": 0, "stage": "after"},
    ]
    columns, rows = tracking.table_rows(records)
    assert columns == ["example_id", "prediction", "gold", "stage"]
    assert rows == [["a", '{"balanced": 1}', 1, None], ["b", None, 0, "after"]]


class WandbLogger:  # named like Lightning's, which is how tracking recognises W&B
    def __init__(self):
        self.status = None

    def finalize(self, status):
        self.status = status


@pytest.mark.parametrize("status, exit_code", [("success", 0), ("failed", 1)])
def test_finish_closes_the_wandb_run_with_the_job_outcome(monkeypatch, status, exit_code):
    import wandb

    codes = []
    monkeypatch.setattr(wandb, "finish", lambda exit_code=None: codes.append(exit_code))
    logger = WandbLogger()
    tracking.finish(logger, status)
    assert logger.status == status and codes == [exit_code]


def test_a_failing_evaluation_marks_its_run_failed(tmp_path, monkeypatch):
    from sycophancy.runs import evaluate as pipeline

    statuses = []
    monkeypatch.setattr(pipeline, "finish", lambda logger, status: statuses.append(status))
    monkeypatch.setattr(pipeline, "make_logger", lambda *a: object())
    cfg = compose_config(
        "evaluate",
        [
            "model=tiny-llama",
            "dataset=sst2",
            "dataset.data_dir=/nonexistent",
            f"output_dir={tmp_path}",
        ],
    )
    with pytest.raises(Exception, match="nonexistent"):
        pipeline.evaluate(cfg)
    assert statuses == ["failed"]


def test_unreachable_wandb_falls_back_to_offline_with_the_examples_table(tmp_path):
    run_dir = tmp_path / "run"
    proc = run_script(
        "evaluate", "model=tiny-llama", "dataset.limit=4", "probe.content_free_examples=0",
        "logger=wandb", "logger.init_timeout=3", "group=unit", f"hydra.run.dir={run_dir}",
        env=UNREACHABLE,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "W&B (online mode) is unavailable" in proc.stderr + proc.stdout
    (offline,) = (run_dir / "wandb").glob("offline-run-*")
    (table,) = (offline / "files" / "media" / "table").glob("examples_*.table.json")
    logged = json.loads(table.read_text())
    records = read_jsonl(run_dir / "examples.jsonl")
    assert len(logged["data"]) == len(records) == 12
    assert logged["columns"][0] == "example_id"
    assert (run_dir / "metrics.json").exists()


def test_sweep_report_is_uploaded_as_a_report_run(tmp_path, monkeypatch):
    from matplotlib import pyplot as plt

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    (tmp_path / "results.csv").write_text("model,alignment_wrong\ntiny,0.5\n")
    fig = plt.figure()
    fig.savefig(tmp_path / "alignment.png")
    plt.close(fig)
    written = {"csv": tmp_path / "results.csv", "alignment": tmp_path / "alignment.png"}
    tracking.log_report({"kind": "wandb"}, tmp_path, "unit", written)
    (offline,) = (tmp_path / "wandb").glob("offline-run-*")
    media = offline / "files" / "media"
    assert len(list((media / "table").glob("results_*.table.json"))) == 1
    assert len(list((media / "images").glob("alignment_*.png"))) == 1
    tracking.log_report({"kind": "csv"}, tmp_path / "none", "unit", written)  # not W&B: nothing
    assert not (tmp_path / "none").exists()
