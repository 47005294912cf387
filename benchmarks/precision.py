"""Does a faster setting change what a run reports? Two run folders of the same probe, compared.

Usage:
    python benchmarks/precision.py REFERENCE_RUN FAST_RUN

For every metric of the metric table that both metrics.json files hold at the top level: the
reference value with its 95% interval, the fast value, and whether it lies inside that interval;
then, from examples.jsonl, the share of identical decisions per decision method and the largest
option log-prob difference. Exits 1 if a metric leaves the reference interval.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from sycophancy.metrics.table import METRICS


def load(run: Path) -> tuple[dict, dict[tuple[str, str], dict]]:
    """metrics.json and the records of examples.jsonl keyed by (example id, condition)."""
    metrics = json.loads((run / "metrics.json").read_text())
    records = {}
    with open(run / "examples.jsonl", encoding="utf-8") as handle:
        for line in handle:
            rec = json.loads(line)
            records[(rec["example_id"], rec.get("condition", ""))] = rec
    return metrics, records


def metric_rows(reference: dict, fast: dict) -> list[tuple[str, float, list, float, bool]]:
    """(name, reference value, its interval, fast value, inside) for every shared metric."""
    rows = []
    for metric in METRICS:
        ref, new = reference.get(metric.name), fast.get(metric.name)
        interval = reference.get(f"{metric.name}_ci")
        if ref is None or new is None or not interval:
            continue
        rows.append((metric.name, ref, interval, new, interval[0] <= new <= interval[1]))
    return rows


def decision_agreement(reference: dict, fast: dict) -> tuple[dict[str, float], float, int]:
    """Per method the share of identical decisions, the largest score difference, the count."""
    shared = sorted(set(reference) & set(fast))
    methods = set.intersection(
        *(set(reference[k].get("prediction", {})) & set(fast[k].get("prediction", {})) for k in shared)
    ) if shared else set()  # fmt: skip
    agree = {
        m: sum(reference[k]["prediction"][m] == fast[k]["prediction"][m] for k in shared)
        / len(shared)
        for m in sorted(methods)
    }
    gap = max(
        (
            abs(reference[k]["scores"][o] - fast[k]["scores"][o])
            for k in shared
            if "scores" in reference[k] and "scores" in fast[k]
            for o in reference[k]["scores"]
        ),
        default=0.0,
    )
    return agree, gap, len(shared)


def main(argv: list[str] | None = None) -> int:
    """Print the comparison; 1 if any metric leaves the reference run's interval."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("reference", type=Path, help="run folder of the reference setting (fp32)")
    parser.add_argument("fast", type=Path, help="run folder of the faster setting")
    args = parser.parse_args(argv)
    (ref_metrics, ref_records), (new_metrics, new_records) = load(args.reference), load(args.fast)
    rows = metric_rows(ref_metrics, new_metrics)
    print(f"{'metric':<28} {'reference [95% interval]':<30} {'fast':>8}  inside")
    for name, ref, (low, high), new, inside in rows:
        print(
            f"{name:<28} {ref:.3f} [{low:.3f}, {high:.3f}]{'':<12} {new:8.3f}  {'yes' if inside else 'NO'}"
        )
    agree, gap, n = decision_agreement(ref_records, new_records)
    shares = ", ".join(f"{m} {100 * a:.1f}%" for m, a in agree.items())
    print(f"identical decisions over {n} prompts: {shares}; largest |d log-prob| {gap:.3f}")
    outside = [name for name, *_, inside in rows if not inside]
    print(f"{len(rows) - len(outside)} of {len(rows)} metrics inside the reference interval")
    return 1 if outside else 0


if __name__ == "__main__":
    sys.exit(main())
