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


# --- artefacts know their base model -------------------------------------------------------------

TINY_LLAMA = {"name": "tiny-llama", "family": "causal", "source": "tiny", "chat_template": True}
TINY_T5 = {"name": "tiny-t5", "family": "seq2seq", "source": "tiny", "chat_template": False}
SOFT_PROMPT = {"kind": "prompt_tuning", "num_virtual_tokens": 4, "init": "vocab"}


def tiny(seed: int = 0, family: str = "causal"):
    from sycophancy import models

    cfg = TINY_LLAMA if family == "causal" else TINY_T5
    return models.load_model({**cfg, "tiny": {"seed": seed}})


def saved_adapter(tmp_path) -> Path:
    from sycophancy.mitigations import adapters

    return adapters.save_adapter(adapters.add_adapter(tiny(0), SOFT_PROMPT), tmp_path / "adapter")


def test_fingerprint_tells_weights_and_architectures_apart_and_ignores_wrappers():
    from sycophancy.mitigations import adapters
    from sycophancy.models.fingerprint import fingerprint

    base = fingerprint(tiny(0))
    assert base == fingerprint(tiny(0))  # same seed, same weights
    assert base == fingerprint(adapters.add_adapter(tiny(0), SOFT_PROMPT))  # adapter on top
    assert base["embedding_sha256"] != fingerprint(tiny(1))["embedding_sha256"]
    assert base["family"] == "causal" and fingerprint(tiny(0, "seq2seq"))["family"] == "seq2seq"


@pytest.mark.parametrize(
    ("seed", "family", "says"),
    [(1, "causal", "other weights"), (0, "seq2seq", "family causal vs seq2seq")],
)
def test_an_adapter_refuses_another_base_model(tmp_path, seed, family, says):
    from sycophancy.errors import UserError
    from sycophancy.mitigations import adapters

    path = saved_adapter(tmp_path)
    assert (path / "base_model.json").is_file()
    with pytest.raises(UserError, match=says):
        adapters.attach_adapter(tiny(seed, family), path)
    assert adapters.attach_adapter(tiny(0), path).name == "tiny-llama+prompt_tuning"


@pytest.mark.parametrize(
    ("damage", "says"),
    [
        (lambda p: (p / "adapter_model.safetensors").write_bytes(b"x" * 40), "damaged"),
        (lambda p: (p / "adapter_config.json").write_text("{"), "not valid JSON"),
        (lambda p: (p / "adapter_model.safetensors").unlink(), "no adapter_model"),
        (lambda p: (p / "adapter_config.json").unlink(), "adapter_config.json missing"),
        (lambda p: (p / "base_model.json").write_text("{oops"), "unreadable"),
    ],
)
def test_a_damaged_adapter_is_refused_before_the_model_loads(tmp_path, damage, says):
    from sycophancy.errors import UserError
    from sycophancy.mitigations import adapters

    path = saved_adapter(tmp_path)
    damage(path)
    with pytest.raises(UserError, match=says):
        adapters.PromptTuning().check({"mitigation": {"adapter_path": str(path)}})


def test_a_damaged_or_foreign_checkpoint_is_refused(tmp_path):
    import torch

    from sycophancy.errors import UserError
    from sycophancy.mitigations import adapters
    from sycophancy.training.checkpoints import check_checkpoint_model, read_checkpoint
    from sycophancy.training.module import AdapterModule

    tuned = adapters.add_adapter(tiny(0), SOFT_PROMPT)
    module = AdapterModule(tuned, {"mitigation": SOFT_PROMPT})
    checkpoint = {"hyper_parameters": {"mitigation": SOFT_PROMPT}}
    module.on_save_checkpoint(checkpoint)
    path = tmp_path / "last.ckpt"
    torch.save(checkpoint, path)
    cfg = {"mitigation": SOFT_PROMPT}
    check_checkpoint_model(read_checkpoint(path, cfg), tiny(0), path)
    with pytest.raises(UserError, match="other weights"):
        check_checkpoint_model(read_checkpoint(path, cfg), tiny(1), path)
    with pytest.raises(UserError, match=r"mitigation.kind=prompt_tuning \(now lora\)"):
        read_checkpoint(path, {"mitigation": {"kind": "lora"}})
    with pytest.raises(UserError, match="num_virtual_tokens=4 \\(now 8\\)"):
        read_checkpoint(path, {"mitigation": {**SOFT_PROMPT, "num_virtual_tokens": 8}})
    other = AdapterModule(
        adapters.add_adapter(tiny(0), {**SOFT_PROMPT, "num_virtual_tokens": 8}), {}
    )
    with pytest.raises(UserError, match="do not match this run's adapter"):
        other.on_load_checkpoint(checkpoint)
    (tmp_path / "cut.ckpt").write_bytes(path.read_bytes()[:300])
    with pytest.raises(UserError, match="not a readable checkpoint"):
        read_checkpoint(tmp_path / "cut.ckpt", cfg)
    with pytest.raises(UserError, match="does not exist"):
        read_checkpoint(tmp_path / "nope.ckpt", cfg)
