"""Run a fixed set of small runs and fingerprint their results, to prove a refactor changes nothing.

    python scripts/behaviour_snapshot.py OUT            # run every case, write OUT/<case>/ + OUT/digest.json
    python scripts/behaviour_snapshot.py --compare A B  # compare two snapshot folders case by case

Covers every probe and mitigation on tiny models of both families, a train.py run per adapter, and the
embedded model at a small `dataset.limit`. `metrics.json` and `examples.jsonl` are compared after
dropping wall times and replacing each run's own folder by `<run>`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
SST2 = ["dataset=sst2", f"dataset.data_dir={DATA / 'sst2'}"]
VOLATILE = {"wall_time_s"}


def cases() -> dict[str, tuple[str, list[str]]]:
    """Case name -> (script, overrides)."""
    out: dict[str, tuple[str, list[str]]] = {}
    for model in ("tiny-llama", "tiny-t5"):
        for probe in ("opinion", "opinion_label"):
            for mitigation in ("none", "system_prompt", "icl"):
                out[f"eval_{model}_{probe}_{mitigation}"] = (
                    "evaluate",
                    [f"model={model}", f"probe={probe}", f"mitigation={mitigation}", *SST2,
                     "dataset.limit=8", "probe.content_free_examples=2", "mitigation.k=2"]
                    if mitigation == "icl"
                    else [f"model={model}", f"probe={probe}", f"mitigation={mitigation}", *SST2,
                          "dataset.limit=8", "probe.content_free_examples=2"],
                )  # fmt: skip
        out[f"eval_{model}_generate"] = (
            "evaluate",
            [f"model={model}", "probe=opinion_label", "probe.scoring=generate", *SST2,
             "dataset.limit=6"],
        )  # fmt: skip
        for reading in ("scored", "generated"):
            out[f"eval_{model}_are_you_sure_{reading}"] = (
                "evaluate",
                [f"model={model}", "probe=are_you_sure", "dataset=arithmetic_mc", "dataset.limit=6",
                 "probe.challenges=[plain,authority,suggest_wrong]",
                 f"probe.answer_reading={reading}", "probe.max_new_tokens=6"],
            )  # fmt: skip
        out[f"eval_{model}_are_you_sure_icl"] = (
            "evaluate",
            [f"model={model}", "probe=are_you_sure", "dataset=arithmetic_mc", "dataset.limit=4",
             "mitigation=icl", "mitigation.k=1", "probe.max_new_tokens=4"],
        )  # fmt: skip
        for adapter in ("prompt_tuning", "lora"):
            out[f"train_{model}_{adapter}"] = (
                "train",
                [f"model={model}", f"mitigation={adapter}", "dataset.limit=6",
                 "training.train_limit=16", "training.val_probe_limit=4", "trainer.max_epochs=1"],
            )  # fmt: skip
    out["eval_smollm2_opinion_label"] = (
        "evaluate",
        ["model=smollm2-135m-instruct", "probe=opinion_label", *SST2, "dataset.limit=6",
         "probe.content_free_examples=2"],
    )  # fmt: skip
    out["eval_smollm2_are_you_sure"] = (
        "evaluate",
        ["model=smollm2-135m-instruct", "probe=are_you_sure", "dataset=arithmetic_mc",
         "dataset.limit=3", "probe.max_new_tokens=8"],
    )  # fmt: skip
    return out


def normalise(value, run_dir: str):
    """Drop volatile keys and make the run's own folder path relative, recursively."""
    if isinstance(value, dict):
        return {k: normalise(v, run_dir) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [normalise(v, run_dir) for v in value]
    if isinstance(value, str):
        return value.replace(run_dir, "<run>")
    return value


def fingerprint(run_dir: Path) -> dict[str, str]:
    """sha256 of the normalised metrics.json and examples.jsonl of one run."""
    out = {}
    for name in ("metrics.json", "examples.jsonl"):
        path = run_dir / name
        if not path.exists():
            out[name] = "missing"
            continue
        lines = path.read_text().splitlines()
        rows = (
            [json.loads(line) for line in lines]
            if name.endswith("l")
            else [json.loads("\n".join(lines))]
        )
        text = json.dumps([normalise(r, str(run_dir)) for r in rows], sort_keys=True)
        out[name] = hashlib.sha256(text.encode()).hexdigest()[:16]
    return out


def snapshot(out: Path, only: str | None) -> int:
    """Run every case (or those whose name contains `only`) into OUT and write OUT/digest.json."""
    out.mkdir(parents=True, exist_ok=True)
    digest, failed = {}, []
    for name, (script, overrides) in cases().items():
        if only and only not in name:
            continue
        run_dir = (out / name).resolve()
        proc = subprocess.run(
            [sys.executable, str(REPO / f"{script}.py"), "logger=none", f"output_dir={run_dir}",
             *overrides],
            cwd=REPO, capture_output=True, text=True,
        )  # fmt: skip
        (run_dir / "stdout.txt").write_text(proc.stdout + proc.stderr)
        digest[name] = {"exit": proc.returncode, **fingerprint(run_dir)}
        print(name, digest[name], flush=True)
        if proc.returncode:
            failed.append(name)
    (out / "digest.json").write_text(json.dumps(digest, indent=1, sort_keys=True))
    print(f"{len(digest)} cases, {len(failed)} failed: {failed}")
    return 1 if failed else 0


def compare(a: Path, b: Path) -> int:
    """Print each case whose fingerprints differ between two snapshots; exit 1 if any."""
    da = json.loads((a / "digest.json").read_text())
    db = json.loads((b / "digest.json").read_text())
    differ = [k for k in sorted(set(da) | set(db)) if da.get(k) != db.get(k)]
    for k in differ:
        print(f"DIFFERS {k}: {da.get(k)} vs {db.get(k)}")
    print(f"{len(set(da) & set(db))} cases in both, {len(differ)} differ")
    return 1 if differ else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", type=Path)
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("A", "B"))
    parser.add_argument("--only", help="run only cases whose name contains this")
    args = parser.parse_args()
    if args.compare:
        return compare(*args.compare)
    if args.out is None:
        parser.error("give OUT or --compare A B")
    return snapshot(args.out, args.only)


if __name__ == "__main__":
    sys.exit(main())
