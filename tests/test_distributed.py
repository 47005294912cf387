"""Data-parallel training: ranks get disjoint balanced batches; 2-process DDP on CPU (gloo) end to end."""

import csv
import json
import math

import pytest
from helpers import run_script
from safetensors.torch import load_file

from sycophancy.training.batches import BalancedSampler

CELLS = [(right, gold) for right in (True, False) for gold in ("positive", "negative")] * 10


def test_ranks_split_each_epoch_into_disjoint_equal_shares():
    alone = list(BalancedSampler(CELLS, 4, 5, seed=3))
    shares = [list(BalancedSampler(CELLS, 4, 5, seed=3, num_replicas=2, rank=r)) for r in (0, 1)]
    assert len(shares[0]) == len(shares[1]) == 3  # 5 batches rounded up to whole rounds of 2 ranks
    assert shares[0][:2] == [alone[0], alone[2]] and shares[1][:2] == [alone[1], alone[3]]
    for batch in shares[0] + shares[1]:
        assert sorted(CELLS[i] for i in batch) == sorted(set(CELLS))  # still one item per cell


def test_rank_outside_the_world_is_refused():
    with pytest.raises(ValueError, match="rank 2"):
        BalancedSampler(CELLS, 4, 5, seed=0, num_replicas=2, rank=2)


def test_local_ddp_inside_a_multirun_is_refused_before_any_work(monkeypatch):
    from lightning import Trainer

    from sycophancy.errors import UserError
    from sycophancy.runs import train as training

    monkeypatch.setattr(training, "in_multirun", lambda: True)
    ddp = Trainer(accelerator="cpu", devices=2, strategy="ddp", logger=False)
    with pytest.raises(UserError, match="submitit_slurm"):
        training.refuse_local_ddp_in_multirun(ddp)
    training.refuse_local_ddp_in_multirun(Trainer(accelerator="cpu", devices=1, logger=False))
    monkeypatch.setattr(training, "in_multirun", lambda: False)
    training.refuse_local_ddp_in_multirun(ddp)  # a single run may launch its workers


@pytest.mark.slow
def test_two_process_ddp_on_cpu_trains_one_soft_prompt(tmp_path):
    run_dir = tmp_path / "run"
    proc = run_script(
        "train", "model=tiny-llama", "dataset.limit=4", "training.train_limit=32",
        "training.val_probe_limit=4", "training.batch_size=4", "trainer=ddp",
        "trainer.accelerator=cpu", "trainer.devices=2", "trainer.precision=32-true",
        "trainer.max_epochs=2", "trainer.enable_progress_bar=false",
        "mitigation.num_virtual_tokens=5", "logger=csv", f"output_dir={run_dir}",
        f"hydra.run.dir={run_dir}",
        timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2" in proc.stderr
    assert proc.stdout.count("before: acc_no_opinion") == 1  # only rank 0 measures
    metrics = json.loads((run_dir / "metrics.json").read_text())
    items = metrics["training"]["items"]
    steps_per_epoch = math.ceil((items // 4) / 2)  # the epoch's batches are shared by the 2 ranks
    assert metrics["training"]["steps"] == 2 * steps_per_epoch
    weights = load_file(run_dir / "adapter" / "adapter_model.safetensors")
    (soft_prompt,) = weights.values()
    assert tuple(soft_prompt.shape) == (5, 64)  # num_virtual_tokens x tiny-llama's d_model
    with open(run_dir / "csv" / "metrics.csv", encoding="utf-8") as handle:
        losses = [float(r["train/loss"]) for r in csv.DictReader(handle) if r.get("train/loss")]
    assert losses and all(math.isfinite(x) for x in losses)
    assert {"before", "after", "delta"} <= set(metrics)
