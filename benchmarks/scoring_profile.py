"""Where the default scorer's time goes, and how its matmuls compare with the same shapes alone.

Usage:
    python benchmarks/scoring_profile.py            # 192 SST-2 opinion_label prompts, the default
    python benchmarks/scoring_profile.py --n 48     # fewer prompts

Scores the benchmark's prompts (`throughput.py`'s SST-2 `opinion_label` set) with the default
setting of the embedded model, twice untimed, then once timed and once under torch's profiler. It
prints: the timed run; the tokens the model was fed (and how many were padding); the operators by
share of self time; the matmuls' total work and rate; the rate the same layer shapes reach alone
(one decoder layer's seven linear maps at the batch's row count, repeated); and the time the
matmul work alone would take at that rate. That rate is one short microbenchmark and moves ~2x from
run to run on a shared 2-core machine, so the estimate is a rough scale, not a bound.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
import throughput  # noqa: E402  (the benchmark's prompts and configs)

from sycophancy.models import load_model  # noqa: E402
from sycophancy.models.allocator import keep_freed_memory  # noqa: E402
from sycophancy.scoring import score_options  # noqa: E402


def fed_tokens(model, run) -> tuple[int, int, int]:
    """Input positions the model's forward calls received during `run()`, how many of them were
    padding (attention mask rows that see only themselves, or a 0 in a 2-d mask), and the calls."""
    seen = [0, 0, 0]

    def count(_module, _args, kwargs):
        ids, mask = kwargs.get("input_ids"), kwargs.get("attention_mask")
        if ids is None:
            return
        seen[0] += ids.numel()
        seen[2] += 1
        if mask is not None and mask.dim() == 4:
            blocked = torch.finfo(mask.dtype).min if mask.is_floating_point() else False
            visible = (mask[:, 0] != blocked).sum(dim=-1)
            seen[1] += int((visible == 1).sum())  # padding attends only to itself
        elif mask is not None:
            seen[1] += int((mask == 0).sum())

    hook = model.register_forward_pre_hook(count, with_kwargs=True)
    try:
        run()
    finally:
        hook.remove()
    return seen[0], seen[1], seen[2]


def matmul_work(prof) -> tuple[float, float]:
    """Total FLOPs and self seconds of the profiled 2-d matmuls (aten::mm)."""
    flops, seconds = 0.0, 0.0
    for event in prof.key_averages(group_by_input_shape=True):
        if event.key != "aten::mm":
            continue
        shapes = event.input_shapes
        if len(shapes) >= 2 and len(shapes[0]) == 2 and len(shapes[1]) == 2:
            flops += 2.0 * shapes[0][0] * shapes[0][1] * shapes[1][1] * event.count
        seconds += event.self_cpu_time_total / 1e6
    return flops, seconds


def layer_rate(model, rows: int, repeats: int = 30) -> float:
    """FLOP/s of one decoder layer's linear maps alone on `rows` input rows (its own weights)."""
    layer = model.model.layers[0]
    linears = [m for m in layer.modules() if isinstance(m, torch.nn.Linear)]
    inputs = {id(m): torch.randn(rows, m.in_features, dtype=m.weight.dtype) for m in linears}
    flops = sum(2.0 * rows * m.in_features * m.out_features for m in linears)
    with torch.inference_mode():
        for m in linears:
            m(inputs[id(m)])
        start = time.perf_counter()
        for _ in range(repeats):
            for m in linears:
                m(inputs[id(m)])
        return flops * repeats / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    """Profile the default scorer and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=192, help="prompts (multiple of 3)")
    parser.add_argument("--data-dir", type=Path, default=throughput.DATA_DIR)
    args = parser.parse_args(argv)
    throughput.quiet()
    lm = load_model(throughput.embedded_config(None))
    cfg = throughput.compose_plain(
        "evaluate", throughput.probe_overrides(args.data_dir, max(1, args.n // 3))
    )
    items, texts = throughput.probe_prompts(cfg, lm.tokenizer, lm.chat)
    options = [list(item.options) for item in items]

    def run():
        return score_options(lm, texts, options, batch_size=throughput.BATCH)

    print(f"cpu: {throughput.cpu_description()}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; {len(texts)} prompts, default setting")  # fmt: skip
    run(), run()
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    start = time.perf_counter()
    fed, padding, calls = fed_tokens(lm.model, run)
    seconds = time.perf_counter() - start
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    print(f"timed run: {seconds:.2f} s, {len(texts) / seconds:.1f} prompts/s, {faults} page faults "
          f"(glibc keeps freed memory: {keep_freed_memory()})")  # fmt: skip
    print(f"positions fed to the model: {fed} ({fed / len(texts):.1f} a prompt), "
          f"{padding} of them padding ({100 * padding / fed:.1f}%), in {calls} forward calls")  # fmt: skip
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        run()
    total = sum(e.self_cpu_time_total for e in prof.key_averages()) / 1e6
    print(f"\nprofiled run: {total:.2f} s of operator self time; largest shares:")
    for event in sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:10]:
        share = event.self_cpu_time_total / 1e6 / total
        print(f"  {event.key:<44} {100 * share:5.1f}%  {event.count:6d} calls")
    flops, mm_seconds = matmul_work(prof)
    rows = round(fed / calls)  # a forward call's mean row count
    alone = layer_rate(lm.model, rows)
    print(f"\nmatmuls (aten::mm): {flops / 1e12:.2f} TFLOP in {mm_seconds:.2f} s = "
          f"{flops / mm_seconds / 1e9:.0f} GFLOP/s")  # fmt: skip
    print(f"one layer's linear maps alone at {rows} rows: {alone / 1e9:.0f} GFLOP/s")
    floor = flops / alone
    print(f"matmul work alone at that rate: {floor:.2f} s = {len(texts) / floor:.1f} prompts/s "
          f"(the timed run is {seconds / floor:.2f}x it)")  # fmt: skip


if __name__ == "__main__":
    main()
