"""Reliability: interrupted runs resume exactly, artefacts know their model, bounded prompts, quiet runs."""

import json
import signal
from pathlib import Path

import pytest
from helpers import compose_config, run_script

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
    ("mitigation", "step", "sig"),
    [  # mid-epoch, epoch end, Ctrl-C, second epoch with LoRA dropout (reads the torch RNG)
        ("prompt_tuning", 5, "SIGTERM"),
        ("prompt_tuning", 8, "SIGTERM"),
        ("prompt_tuning", 3, "SIGINT"),
        ("lora", 11, "SIGTERM"),
    ],
)
def test_a_signal_at_a_step_then_resume_gives_the_uninterrupted_adapter(
    tmp_path, mitigation, step, sig
):
    args = [*TINY_TRAIN, f"mitigation={mitigation}"]
    whole = run_script("train", *args, f"output_dir={tmp_path / 'whole'}")
    assert whole.returncode == 0, whole.stderr[-2000:]

    cut = tmp_path / "cut"
    killed = run_script(
        "train", *args, f"output_dir={cut}", env={"SYCOPHANCY_TEST_SIGNAL_AT_STEP": f"{step}:{sig}"}
    )
    code = 128 + getattr(signal, sig)
    assert killed.returncode == code
    checkpoint = cut / "checkpoints" / "last.ckpt"
    last = killed.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: Training was interrupted by {sig} at step {step}")
    assert f"ckpt_path={checkpoint}" in last and "Traceback" not in killed.stderr
    assert checkpoint.is_file() and not (cut / "metrics.json").exists()
    assert f"Interrupted (exit {code})" in (cut / "error.txt").read_text()

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


# --- bounded prompts and memory ------------------------------------------------------------------


def test_a_prompt_longer_than_the_context_is_refused_naming_it():
    from sycophancy.errors import UserError
    from sycophancy.scoring import score_options
    from sycophancy.scoring.limits import context_limit

    lm = tiny(0)  # byte tokenizer, max_position_embeddings 4096
    assert context_limit(lm) == 4096
    prompts = ["Review: fine.", "Review: " + "long " * 1000]  # 5008 bytes
    with pytest.raises(
        UserError, match=r"1 of 2 prompts are longer than the 4096 tokens.*prompt 1"
    ):
        score_options(lm, prompts, ["positive", "negative"])
    assert score_options(lm, prompts[:1], ["positive", "negative"]).shape == (1, 2)


def test_t5_has_a_default_context_and_model_max_length_overrides_it():
    from sycophancy.errors import UserError
    from sycophancy.scoring import generate
    from sycophancy.scoring.limits import context_limit, set_max_length

    lm = tiny(0, "seq2seq")
    assert context_limit(lm) == 4096  # the tiny byte tokenizer says so
    lm.tokenizer.model_max_length = int(1e30)  # transformers' "unset": relative positions alone
    assert context_limit(lm) == 512
    assert context_limit(set_max_length(lm, 64)) == 64
    with pytest.raises(UserError, match="longer than the 64 tokens"):
        generate(lm, ["x" * 100], max_new_tokens=2)


def test_a_batch_the_free_memory_cannot_hold_is_refused(monkeypatch):
    from sycophancy.errors import UserError
    from sycophancy.scoring import limits, score_options

    lm = tiny(0)
    need = limits.batch_bytes(lm, 16, 300)
    monkeypatch.setattr(limits, "free_memory", lambda model: need)  # 80% of it is not enough
    with pytest.raises(
        UserError, match=r"needs about [\d.]+ MiB, more than 80% .*probe\.batch_size=1[23]\b"
    ):
        score_options(lm, ["y" * 280] * 16, ["a", "b"], batch_size=16)


def test_icl_k_larger_than_its_pool_is_refused_not_capped():
    from sycophancy.errors import UserError
    from sycophancy.mitigations.prompting import InContext

    cfg = {"data_seed": 0, "mitigation": {"k": 1000, "pool_size": None}}
    shots = lambda cfg, limit: [((("q", "a"),),)] * 400  # noqa: E731
    with pytest.raises(UserError, match="mitigation.k=1000 .* than the 400"):
        InContext().context(cfg, shots)
    with pytest.raises(UserError, match="larger than mitigation.pool_size=50"):
        InContext().check({"mitigation": {"k": 60, "pool_size": 50}})
    cfg["mitigation"]["k"] = 2
    assert len(InContext().context(cfg, shots)("e1").shots) == 2


# --- run folders and noise -----------------------------------------------------------------------


def test_a_finished_run_folder_is_not_reused(tmp_path):
    from sycophancy.errors import UserError
    from sycophancy.runs.jobs import prepare

    cfg = compose_config("evaluate", ["model=tiny-llama", f"output_dir={tmp_path}"])
    (tmp_path / "error.txt").write_text("an interrupted run's")
    prepare(cfg)  # a failed or interrupted run's folder may be reused; its error.txt goes
    assert not (tmp_path / "error.txt").exists()
    (tmp_path / "metrics.json").write_text("{}")
    with pytest.raises(UserError, match="already holds the results of another run"):
        prepare(cfg)
    (tmp_path / "file").write_text("")
    inside_a_file = compose_config("evaluate", [f"output_dir={tmp_path / 'file' / 'run'}"])
    with pytest.raises(UserError, match="cannot be written"):
        prepare(inside_a_file)


NOISE = (
    "💡 Tip",
    "litlogger",
    "module(s) in eval mode",
    "is deprecated",
    "resuming from a checkpoint",
)


@pytest.mark.slow
def test_a_tiny_training_run_prints_no_third_party_noise(tmp_path):
    args = [*TINY_TRAIN, "trainer.max_epochs=1", "trainer.log_every_n_steps=50", "logger=csv"]
    done = run_script("train", *args, f"output_dir={tmp_path}")
    assert done.returncode == 0, done.stderr[-2000:]
    assert not [n for n in NOISE if n in done.stderr], done.stderr
    assert "smaller than the logging interval" in done.stderr  # a genuine Lightning warning stays


def test_the_noise_filters_are_narrow():
    import subprocess
    import sys

    code = (
        "import warnings\n"
        "from sycophancy.runs.noise import quiet_third_party\n"
        "from lightning.fabric.utilities.warnings import PossibleUserWarning\n"
        "quiet_third_party()\n"
        "warnings.warn('Found 37 module(s) in eval mode at the start of training.', PossibleUserWarning)\n"
        "warnings.warn('Found a genuine problem of ours', PossibleUserWarning)\n"
        "warnings.warn('`is_gradient_checkpointing` is deprecated', FutureWarning)\n"
        "warnings.warn('`other_thing` is deprecated', FutureWarning)\n"
        "warnings.warn('`is_gradient_checkpointing` is deprecated', UserWarning)\n"
        "warnings.warn(\"It is recommended to use `self.log('val/alignment_wrong', ...\", "
        "PossibleUserWarning)\n"
        "warnings.warn(\"It is recommended to use `self.log('val/loss', ...\", PossibleUserWarning)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "eval mode" not in done.stderr and "genuine problem of ours" in done.stderr
    assert "`other_thing` is deprecated" in done.stderr
    assert done.stderr.count("is_gradient_checkpointing") == 1  # the UserWarning one
    assert "'val/alignment_wrong'" not in done.stderr and "'val/loss'" in done.stderr


def test_rows_with_an_empty_text_are_refused(tmp_path):
    import yaml

    from sycophancy import sources
    from sycophancy.errors import UserError

    cfg = yaml.safe_load((Path(__file__).parents[1] / "conf/dataset/local.yaml").read_text())
    cfg.update(data_dir=str(tmp_path), data_seed=0)
    (tmp_path / "validation.csv").write_text("text,label\ngood,1\n,0\n  ,1\n")
    with pytest.raises(UserError, match=r"2 rows whose text is empty \(rows 1, 2"):
        sources.load_classification(cfg, "validation")


def test_an_adapter_of_another_kind_is_refused_before_the_model_loads(tmp_path):
    from sycophancy.errors import UserError
    from sycophancy.mitigations.adapters import LoRA

    path = saved_adapter(tmp_path)  # a soft prompt
    with pytest.raises(UserError, match="is a prompt_tuning adapter, and mitigation=lora"):
        LoRA().check({"mitigation": {"kind": "lora", "name": "lora", "adapter_path": str(path)}})


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        (["mitigation=lora", "mitigation.r=0"], "mitigation.r=0 must be at least 1"),
        (["mitigation.num_virtual_tokens=0"], "mitigation.num_virtual_tokens=0 must be at least 1"),
        (["probe.scoring=sample"], "probe.scoring='sample' is not one of logprob, generate"),
        (["mitigation.optimizer.lr=abc"], "mitigation.optimizer.lr='abc' is not a number"),
    ],
)
def test_sizes_and_choices_that_would_fail_late_are_refused_up_front(overrides, says):
    from sycophancy.errors import UserError
    from sycophancy.mitigations.adapters import PromptTuning
    from sycophancy.runs.jobs import prepare

    with pytest.raises(UserError, match=says):
        plain, _ = prepare(compose_config("train", overrides), write=False)
        PromptTuning().check(plain)  # train.py checks the mitigation before the model loads


def test_trainer_settings_the_machine_lacks_are_one_paragraph(tmp_path):
    from sycophancy.errors import UserError
    from sycophancy.runs.train import train

    cfg = compose_config(
        "train",
        ["model=tiny-llama", "trainer.accelerator=tpu", "logger=none", f"output_dir={tmp_path}"],
    )
    with pytest.raises(UserError, match="The trainer settings cannot run here"):
        train(cfg)


@pytest.mark.parametrize("script", ["evaluate", "train"])
def test_an_unknown_cpu_attention_setting_stops_the_run_before_the_model_loads(
    tmp_path, monkeypatch, script
):
    from sycophancy.errors import UserError
    from sycophancy.runs import evaluate, train

    def no_load(*_args, **_kwargs):
        raise AssertionError("the model loaded before the setting was checked")

    monkeypatch.setattr("sycophancy.models.load_model", no_load)
    monkeypatch.setenv("SYCOPHANCY_CPU_ATTENTION", "flash")
    cfg = compose_config(script, ["model=tiny-llama", "logger=none", f"output_dir={tmp_path}"])
    run = evaluate.evaluate if script == "evaluate" else train.train
    with pytest.raises(UserError, match="SYCOPHANCY_CPU_ATTENTION='flash' is not a CPU attention"):
        run(cfg)
