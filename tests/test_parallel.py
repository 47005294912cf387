"""Data-parallel scoring: contiguous shares, ordered merges, the gather's refusals, and a 2-process
torchrun evaluation (gloo on CPU) whose files equal the single-process run's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch.distributed as dist
from helpers import REPO, run_script
from test_models import model_cfg

from sycophancy.errors import UserError
from sycophancy.models import load_model
from sycophancy.runs.jobs import join_main_folder
from sycophancy.scoring import forward, parallel


@pytest.mark.parametrize(
    ("n", "size", "shares"),
    [
        (10, 2, [(0, 5), (5, 10)]),
        (7, 3, [(0, 3), (3, 5), (5, 7)]),  # 7 = 3 + 2 + 2: the first 7 % 3 ranks take one more
        (2, 4, [(0, 1), (1, 2), (2, 2), (2, 2)]),  # more ranks than prompts: empty shares
        (0, 2, [(0, 0), (0, 0)]),
    ],
)
def test_shares_are_contiguous_and_cover_every_item_once(n, size, shares):
    assert [parallel.bounds(n, size, r) for r in range(size)] == shares
    items = [f"p{i}" for i in range(n)]
    assert parallel.merge([parallel.shard(items, size, r) for r in range(size)]) == items


@pytest.mark.parametrize("n", range(0, 12))
@pytest.mark.parametrize("size", [1, 2, 3, 5, 16])
def test_shard_then_merge_is_the_identity(n, size):
    items = list(range(n))
    parts = [parallel.shard(items, size, r) for r in range(size)]
    assert parallel.merge(parts) == items
    assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_a_rank_outside_the_world_is_refused():
    with pytest.raises(ValueError, match="rank 2"):
        parallel.bounds(5, 2, 2)


def test_score_shares_merge_in_rank_order_with_empty_shares():
    parts = [np.array([[1.0, 2.0], [3.0, 4.0]]), np.zeros((0, 2)), np.array([[5.0, 6.0]])]
    merged = parallel.merge_scores(parts, 2)
    assert merged.dtype == np.float32 and merged.tolist() == [[1, 2], [3, 4], [5, 6]]


def test_scoring_is_routed_only_when_sharding_or_autocast_asks():
    lm = load_model(model_cfg("tiny-llama"))
    assert not parallel.routed(lm)
    assert parallel.routed(replace(lm, autocast=True))
    token = parallel._world.set(parallel.World(0, 2))
    try:
        assert parallel.routed(lm)
        with parallel._local(lm):
            assert not parallel.routed(lm)  # the routed call itself runs forward.py's scorer
    finally:
        parallel._world.reset(token)


def fake_gather(others):
    """An all_gather_object whose other ranks answered `others` (rank 0 is this process)."""

    def gather(out, mine, group=None):
        out[:] = [mine, *others]

    return gather


def sharded(monkeypatch, others, call, size=2):
    """Run `call` as rank 0 of `size` with a fake collective."""
    monkeypatch.setattr(dist, "all_gather_object", fake_gather(others))
    token = parallel._world.set(parallel.World(0, size))
    try:
        return call()
    finally:
        parallel._world.reset(token)


PROMPTS = ["<|user|>\nGood film?\n<|assistant|>\n", "<|user|>\nBad film?\n<|assistant|>\n"] * 2


def test_rank_zero_scores_its_share_and_takes_the_others_as_they_come(monkeypatch):
    lm = load_model(model_cfg("tiny-llama"))
    alone = forward.score_options(lm, PROMPTS, ["yes", "no"])
    rank1 = np.full((2, 2), -1.0, dtype=np.float32)  # what rank 1 says it scored for prompts 2-3
    call = ("score", PROMPTS, ["yes", "no"], 16)
    others = [(parallel.digest(call), None, rank1)]
    merged = sharded(monkeypatch, others, lambda: forward.score_options(lm, PROMPTS, ["yes", "no"]))
    # its share is planned alone (prefix reuse), so its scores equal the whole run to rounding
    assert np.allclose(merged[:2], alone[:2], atol=1e-5) and np.array_equal(merged[2:], rank1)


def test_ranks_that_scored_different_prompts_are_refused(monkeypatch):
    lm = load_model(model_cfg("tiny-llama"))
    others = [("0123456789abcdef", None, np.zeros((2, 2)))]
    with pytest.raises(UserError, match="different prompts"):
        sharded(monkeypatch, others, lambda: forward.score_options(lm, PROMPTS, ["yes", "no"]))


def test_a_failure_on_another_rank_is_raised_here_too(monkeypatch):
    lm = load_model(model_cfg("tiny-llama"))
    call = ("generate", PROMPTS, 4, 8)
    others = [(parallel.digest(call), "OutOfMemoryError: CUDA out of memory", None)]
    with pytest.raises(RuntimeError, match="rank 1: OutOfMemoryError"):
        sharded(monkeypatch, others, lambda: forward.generate(lm, PROMPTS, 4, 8))


def test_a_failure_here_still_reaches_the_gather_before_it_is_raised(monkeypatch):
    lm = load_model(model_cfg("tiny-llama"))
    gathered = []
    monkeypatch.setattr(
        dist, "all_gather_object", lambda out, mine, group=None: gathered.append(mine)
    )
    token = parallel._world.set(parallel.World(0, 2))
    try:
        with pytest.raises(UserError, match="cannot be told apart"):
            forward.score_options(lm, PROMPTS, ["yes", "yes"])
    finally:
        parallel._world.reset(token)
    assert (
        gathered and "cannot be told apart" in gathered[0][1]
    )  # the other ranks were not left waiting


def test_one_process_needs_no_group():
    with parallel.processes({}) as world:
        assert world.main and world.size == 1 and not dist.is_initialized()


def test_world_size_without_a_launcher_is_a_user_error(monkeypatch):
    for key in ("MASTER_ADDR", "MASTER_PORT", "RANK"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(UserError, match="torchrun --nproc_per_node=2"), parallel.processes():
        pass


def test_a_worker_folder_moves_into_the_main_one(tmp_path):
    main, own = tmp_path / "main", tmp_path / "own"
    (own / ".hydra").mkdir(parents=True)
    assert join_main_folder(own, tmp_path / "elsewhere", 1) == own  # rank 0's not on this disk
    assert join_main_folder(own, own, 1) == own  # a shared hydra.run.dir stays
    main.mkdir()
    assert join_main_folder(own, main, 2) == main / ".rank2"
    assert (main / ".rank2" / ".hydra").is_dir() and not own.exists()


def without_volatile(metrics: dict) -> dict:
    """metrics.json minus what differs between any two runs (wall time, run name)."""
    return {k: v for k, v in metrics.items() if k not in ("wall_time_s", "run")}


@pytest.mark.slow
@pytest.mark.parametrize(
    "overrides",
    [
        ["probe=opinion_label"],
        ["probe=are_you_sure", "dataset=arithmetic_mc", "probe.challenges=[plain,suggest_wrong]"],
    ],
    ids=["opinion_label", "are_you_sure"],
)
def test_two_process_torchrun_evaluation_equals_one_process(tmp_path, overrides):
    # One prompt per batch: a prompt's log-probs depend in their last bits on the padding of the
    # batch it shares, which differs between shares; batch 1 pins the comparison to sharding and
    # merging (so does whole-prompt scoring: a share's shared prefixes are planned on its own).
    # 5 examples: 15 opinion prompts, an uneven 8 + 7 split. Every process runs one thread: kernels
    # split across threads can round differently, and a random model's greedy replies (which the
    # "Are you sure?" final turn quotes) flip on near-ties.
    args = ["model=tiny-llama", "dataset.limit=5", "probe.batch_size=1", "model.reuse_prefixes=false",
            "logger=none", *overrides]  # fmt: skip
    one, two = tmp_path / "one", tmp_path / "two"
    one_thread = {"OMP_NUM_THREADS": "1"}
    alone = run_script(
        "evaluate", *args, f"output_dir={one}", f"hydra.run.dir={one}", env=one_thread
    )
    assert alone.returncode == 0, alone.stderr[-3000:]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2"]
    env = {**os.environ, **one_thread}
    hydra_dir = f"hydra.run.dir={tmp_path}/hydra/${{now:%H-%M-%S-%f}}"  # one folder per process
    both = subprocess.run(
        [*torchrun, str(REPO / "evaluate.py"), *args, f"output_dir={two}", hydra_dir],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert both.returncode == 0, both.stderr[-3000:]
    (folder,) = (tmp_path / "hydra").iterdir()  # rank 1's moved into rank 0's
    assert (folder / ".rank1" / ".hydra").is_dir() and (folder / ".hydra").is_dir()
    assert "rank 1 of 2" in both.stdout + both.stderr  # Hydra logs to stdout
    assert both.stdout.count("wrote ") == 1  # rank 0 alone prints and writes
    assert (two / "examples.jsonl").read_text() == (one / "examples.jsonl").read_text()
    metrics = [json.loads(Path(d, "metrics.json").read_text()) for d in (one, two)]
    assert without_volatile(metrics[0]) == without_volatile(metrics[1])
