"""Smoke test of benchmarks/throughput.py --quick: its output and its correctness, never its timings."""

import json
import re
from pathlib import Path

import pytest
from helpers import run_script

FINAL_LINE = re.compile(
    r"speedup: (\d+\.\d)x over the naive loop at (\d+\.\d)% identical decisions"
)
PROJECT_FP32 = "project fp32, whole prompts"


@pytest.mark.slow
def test_quick_benchmark_prints_the_speedup_line_and_agrees_with_the_naive_loop(data_dir, tmp_path):
    out = tmp_path / "bench.json"
    done = run_script(
        "benchmarks/throughput",
        "--quick",
        "--data-dir",
        str(data_dir),
        "--json",
        str(out),
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    last = done.stdout.strip().splitlines()[-1]
    match = FINAL_LINE.fullmatch(last)
    assert match, f"last line {last!r} is not the speedup line"
    figures = json.loads(out.read_text())
    assert figures["device"] == "cpu"  # --device auto on a machine without a GPU
    assert float(match[2]) == pytest.approx(figures["identical_decisions_pct"], abs=0.05)
    for section in ("embedded", "t5"):
        runs = figures[section]
        for run in runs.values():
            for key in ("raw_agreement_pct", "balanced_agreement_pct"):
                if key in run:
                    assert 0.0 <= run[key] <= 100.0
        # the project's fp32 scores are the naive loop's log-probs; lm-eval scores the same options
        assert runs[PROJECT_FP32]["max_abs_logprob_diff"] < 1e-3
        if section == "embedded":  # prefix reuse in fp32 keeps the naive loop's log-probs too
            assert runs["project fp32 + prefix reuse"]["max_abs_logprob_diff"] < 1e-3
            assert runs["project bf16 + prefix reuse (default)"]["raw_agreement_pct"] >= 90.0
        assert runs["lm-eval hf HFLM fp32"]["max_abs_logprob_diff"] < 1e-2


def write_run(folder, metrics: dict, records: list[dict]) -> None:
    """A run folder holding metrics.json and examples.jsonl."""
    folder.mkdir()
    (folder / "metrics.json").write_text(json.dumps(metrics))
    (folder / "examples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def record(example: str, condition: str, raw: int, balanced: int, score: float) -> dict:
    return {
        "example_id": example,
        "condition": condition,
        "prediction": {"none": raw, "balanced": balanced},
        "scores": {"positive": score, "negative": -1.0},
    }


def test_precision_comparison_checks_intervals_and_counts_identical_decisions(tmp_path, capsys):
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import precision

    reference = {"alignment_wrong": 0.6, "alignment_wrong_ci": [0.5, 0.7], "acc_no_opinion": 0.8,
                 "acc_no_opinion_ci": [0.7, 0.9]}  # fmt: skip
    write_run(tmp_path / "ref", reference, [record("a", "none", 0, 0, -0.5), record("a", "wrong", 1, 1, -0.2),
              record("b", "none", 0, 1, -0.1), record("b", "wrong", 0, 0, -0.3)])  # fmt: skip
    fast = {"alignment_wrong": 0.65, "acc_no_opinion": 0.95}  # 0.95 leaves [0.7, 0.9]
    write_run(tmp_path / "fast", fast, [record("a", "none", 0, 0, -0.5), record("a", "wrong", 1, 0, -0.45),
              record("b", "none", 0, 1, -0.1), record("b", "wrong", 0, 0, -0.3)])  # fmt: skip
    assert precision.main([str(tmp_path / "ref"), str(tmp_path / "fast")]) == 1
    out = capsys.readouterr().out
    # 4 shared prompts: raw decisions all equal, balanced 3 of 4; largest gap |-0.2 - -0.45|
    assert "identical decisions over 4 prompts: balanced 75.0%, none 100.0%" in out
    assert "largest |d log-prob| 0.250" in out
    assert "1 of 2 metrics inside the reference interval" in out
    fast["acc_no_opinion"] = 0.85
    (tmp_path / "fast" / "metrics.json").write_text(json.dumps(fast))
    assert precision.main([str(tmp_path / "ref"), str(tmp_path / "fast")]) == 0


def throughput_module():
    """benchmarks/throughput.py, imported."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import throughput

    return throughput


class RecordingGenerator:
    """A stand-in model whose generate() records where its inputs live and scores token 1 highest."""

    def __init__(self):
        self.devices = []

    def generate(self, input_ids, attention_mask, **_):
        from types import SimpleNamespace

        import torch

        self.devices.append((input_ids.device.type, attention_mask.device.type))
        return SimpleNamespace(scores=[torch.log(torch.tensor([[0.25, 0.75]]))])


class TwoTokens:
    """A tokenizer of two one-token words, `a` (id 0) and `b` (id 1)."""

    pad_token_id = bos_token_id = None

    def __call__(self, text, add_special_tokens=False, **_):
        def ids(t):
            return [{"a": 0, "b": 1}[w] for w in t.split()]

        return {"input_ids": [ids(t) for t in text] if isinstance(text, list) else ids(text)}


def test_naive_loop_puts_its_inputs_on_the_models_device():
    """On a GPU the naive loop's ids must go where the model is (meta stands in for cuda here)."""
    from sycophancy.models import LoadedModel

    throughput = throughput_module()
    model = RecordingGenerator()
    lm = LoadedModel(model, TwoTokens(), "causal", False, "stub", "tiny", device="meta")
    scores = throughput.naive_scores(lm, ["a b", "b"], [["a", "b"], ["b", "a"]])
    assert model.devices == [("meta", "meta"), ("meta", "meta")]
    # log-probs of the options' first tokens, in the options' order: log 0.25, log 0.75
    assert scores.ravel().tolist() == pytest.approx([-1.3863, -0.2877, -0.2877, -1.3863], abs=1e-4)


def test_benchmark_asked_for_a_gpu_without_one_says_so_before_loading_anything():
    from sycophancy.errors import UserError

    throughput = throughput_module()
    with pytest.raises(UserError, match="model.device=cpu"):
        throughput.main(["--quick", "--device", "cuda"])


def test_training_batches_follow_the_model_and_the_cpu_clock_needs_no_sync():
    import torch

    throughput = throughput_module()
    batch = {"input_ids": torch.ones(2, 3, dtype=torch.long), "family": "causal"}
    moved = throughput.on_device(batch, "meta")
    assert moved["input_ids"].device.type == "meta" and moved["family"] == "causal"
    throughput.synchronize("cpu")  # no GPU here: must not touch torch.cuda
    cfg = throughput.embedded_config(None, "cuda:1")
    assert (cfg["device"], cfg["dtype"]) == ("cuda:1", "bfloat16")
    assert throughput.embedded_config("float32")["device"] == "auto"
