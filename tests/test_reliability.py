"""Reliability: interrupted runs resume exactly, artefacts know their model, bounded prompts, quiet runs."""

import json
import signal
from pathlib import Path

import pytest
from helpers import run_script

TINY_TRAIN = [
    "model=tiny-llama",
    "dataset.limit=6",
    "training.train_limit=16",
    "training.filter=false",
    "training.batch_size=2",  # 8 steps per epoch
    "training.val_probe_limit=4",
    "trainer.max_epochs=2",
    "logger=none",
]


def adapter_bytes(run: Path) -> bytes:
    return (run / "adapter" / "adapter_model.safetensors").read_bytes()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("mitigation", "step"),
    [("prompt_tuning", 5), ("prompt_tuning", 8), ("lora", 11)],  # mid-epoch, epoch end, epoch 2
)
def test_sigterm_at_a_step_then_resume_gives_the_uninterrupted_adapter(tmp_path, mitigation, step):
    args = [*TINY_TRAIN, f"mitigation={mitigation}"]  # lora: dropout 0.05 reads the torch RNG
    whole = run_script("train", *args, f"output_dir={tmp_path / 'whole'}")
    assert whole.returncode == 0, whole.stderr[-2000:]

    cut = tmp_path / "cut"
    killed = run_script(
        "train", *args, f"output_dir={cut}", env={"SYCOPHANCY_TEST_SIGNAL_AT_STEP": str(step)}
    )
    assert killed.returncode == 128 + signal.SIGTERM
    checkpoint = cut / "checkpoints" / "last.ckpt"
    last = killed.stderr.strip().splitlines()[-1]
    assert last.startswith("error: Training was interrupted by SIGTERM")
    assert f"ckpt_path={checkpoint}" in last and "Traceback" not in killed.stderr
    assert checkpoint.is_file() and not (cut / "metrics.json").exists()
    assert "Interrupted (exit 143)" in (cut / "error.txt").read_text()

    resumed = run_script(
        "train", *args, f"output_dir={tmp_path / 'resumed'}", f"ckpt_path={checkpoint}"
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert adapter_bytes(tmp_path / "resumed") == adapter_bytes(tmp_path / "whole")
    a, b = (json.loads((tmp_path / r / "metrics.json").read_text()) for r in ("whole", "resumed"))
    assert a["after"] == b["after"] and a["delta"] == b["delta"]
    assert a["training"]["steps"] == b["training"]["steps"] == 16


@pytest.mark.slow
def test_an_interrupted_multirun_stops_non_zero_and_lists_the_job(tmp_path):
    sweep = tmp_path / "sweep"
    done = run_script(
        "train",
        "-m",
        *TINY_TRAIN,
        "trainer.max_epochs=1",
        "seed=0,1",
        f"hydra.sweep.dir={sweep}",
        env={"SYCOPHANCY_TEST_SIGNAL_AT_STEP": "3"},
    )
    assert done.returncode == 143
    jobs = sorted(p.name for p in sweep.iterdir() if p.is_dir() and p.name[0].isdigit())
    assert len(jobs) == 2
    assert (sweep / jobs[0] / "checkpoints" / "last.ckpt").is_file()
    assert f"{jobs[0]}: Interrupted (exit 143)" in done.stderr
    assert f"{jobs[1]}: UserError: Not run: an earlier job of this sweep was interrupted" in (
        done.stderr
    )
