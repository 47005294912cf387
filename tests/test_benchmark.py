"""Smoke test of benchmarks/throughput.py --quick: its output and its correctness, never its timings."""

import json
import re

import pytest
from helpers import run_script

FINAL_LINE = re.compile(
    r"speedup: (\d+\.\d)x over the naive loop at (\d+\.\d)% identical decisions"
)
PROJECT_FP32 = "project score_options fp32 (default)"


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
    assert float(match[2]) == pytest.approx(figures["identical_decisions_pct"], abs=0.05)
    for section in ("embedded", "t5"):
        runs = figures[section]
        for run in runs.values():
            for key in ("raw_agreement_pct", "balanced_agreement_pct"):
                if key in run:
                    assert 0.0 <= run[key] <= 100.0
        # the project's fp32 scores are the naive loop's log-probs; lm-eval scores the same options
        assert runs[PROJECT_FP32]["max_abs_logprob_diff"] < 1e-3
        assert runs["lm-eval hf HFLM fp32"]["max_abs_logprob_diff"] < 1e-2
