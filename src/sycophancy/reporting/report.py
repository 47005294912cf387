"""Sweep report: `python -m sycophancy.report DIR` turns run folders into a table and plots."""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import sys
from pathlib import Path

from omegaconf import OmegaConf

from sycophancy.errors import UserError
from sycophancy.files import ERROR_FILE, write_text
from sycophancy.metrics.table import BY_NAME, PAIRED_BOOTSTRAP, is_signed, metric_names
from sycophancy.reporting.summary import with_interval
from sycophancy.reporting.tradeoffs import plot_steering, plot_tradeoff

# the headline metrics, then context for reading a lower alignment (did accuracy fall, did the
# model turn contrarian?)
METRICS = metric_names(report="main") + metric_names(report="context")
PLOTTED = metric_names(plotted=True)
ID_COLUMNS = (
    "model",
    "mitigation",
    "dataset",
    "probe",
    "seed",
    "data_seed",
    "stage",
    "num_virtual_tokens",
    "lr",
    "layer",
    "multiplier",
    "train_datasets",
    "strength",
    "persona",
    "group",
    "run_dir",
)
OPINION_PROBES = ("opinion", "opinion_label")  # the probes with an opinion strength and a persona
STRENGTHS = ("hedged", "plain", "authoritative")  # the strength axis, weakest first
AXES_PLOTTED = ("alignment_wrong", "alignment_wrong_filtered")
BASELINE = "none (before training)"


def metric_columns(metrics: dict, prefix: str = "") -> dict:
    """Value, interval and count of each headline metric present in one metrics dict."""
    out: dict = {}
    for key in METRICS:
        value = metrics.get(key)
        if value is None:
            continue
        ci = metrics.get(f"{key}_ci") or [None, None]
        # its own count first; metrics.json files that predate `<metric>_n` have the population's
        n = metrics.get(f"{key}_n", metrics.get(BY_NAME[key].denominator, metrics.get("n")))
        out[f"{prefix}{key}"] = value
        out[f"{prefix}{key}_low"], out[f"{prefix}{key}_high"] = ci[0], ci[1]
        out[f"{prefix}{key}_n"] = n
    return out


def run_row(run_dir: Path, root: Path) -> dict:
    """One table row from a run folder's config.yaml and metrics.json (train runs: the after values)."""
    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    cfg_path = run_dir / "config.yaml"
    cfg = OmegaConf.to_container(OmegaConf.load(cfg_path)) if cfg_path.exists() else {}
    mitigation = cfg.get("mitigation") or {}
    training = cfg.get("training") or {}
    datasets = training.get("datasets")
    probe = cfg.get("probe") or {}
    opinion = probe.get("kind") in OPINION_PROBES
    row = {
        "model": (cfg.get("model") or {}).get("name"),
        "mitigation": mitigation.get("name"),
        "dataset": (cfg.get("dataset") or {}).get("name"),
        "probe": (cfg.get("probe") or {}).get("name") or metrics.get("probe"),
        "seed": cfg.get("seed"),
        "data_seed": cfg.get("data_seed"),
        "stage": "after" if "after" in metrics else "eval",
        "num_virtual_tokens": mitigation.get("num_virtual_tokens")
        if mitigation.get("kind") == "prompt_tuning"
        else None,
        "lr": (mitigation.get("optimizer") or {}).get("lr"),
        **steering_settings(mitigation),
        "train_datasets": "+".join(
            d if isinstance(d, str) else str(d.get("name")) for d in datasets
        )
        if datasets
        else None,
        "strength": (probe.get("strength") or "plain") if opinion else None,
        "persona": probe.get("persona", "professor") if opinion else None,
        "group": cfg.get("group"),
        "run_dir": str(run_dir.relative_to(root)) if run_dir != root else ".",
    }
    if "after" in metrics:
        row.update(metric_columns(metrics["after"]))
        row.update(metric_columns(metrics.get("before") or {}, "before_"))
        for key in METRICS:
            if key in (metrics.get("delta") or {}):
                row[f"delta_{key}"] = metrics["delta"][key]
    else:
        row.update(metric_columns(metrics))
    return row


def steering_settings(mitigation: dict) -> dict:
    """A steering arm's layer ('10+15' for a list) and multiplier; None for other mitigations."""
    if mitigation.get("kind") != "steering":
        return {"layer": None, "multiplier": None}
    layer = mitigation.get("layer")
    layer = "+".join(map(str, layer)) if isinstance(layer, list) else layer
    multiplier = mitigation.get("multiplier")
    return {"layer": layer, "multiplier": None if multiplier is None else float(multiplier)}


def run_dirs(root: str | Path) -> list[Path]:
    """Folders under root (root included) holding a metrics.json, sorted."""
    root = Path(root)
    return sorted(p.parent for p in root.rglob("metrics.json") if p.is_file())


def collect(root: str | Path) -> list[dict]:
    """One row per run folder under root."""
    root = Path(root)
    return [run_row(d, root) for d in run_dirs(root)]


def failed_jobs(sweep_dir: str | Path) -> list[tuple[Path, str]]:
    """Job folders under a sweep folder with an error.txt and no metrics.json, with the error's last line."""
    out = []
    for err in sorted(Path(sweep_dir).rglob(ERROR_FILE)):
        if not (err.parent / "metrics.json").exists():
            lines = [ln for ln in err.read_text(encoding="utf-8").splitlines() if ln.strip()]
            out.append((err.parent, lines[-1] if lines else "(empty error.txt)"))
    return out


def failures(root: str | Path) -> list[dict]:
    """Job folders under root with an error.txt and no metrics.json: folder and last error line."""
    root = Path(root)
    return [
        {"run_dir": str(path.relative_to(root)), "error": message}
        for path, message in failed_jobs(root)
    ]


def _sort_key(row: dict) -> tuple:
    mitigation = row.get("mitigation") or ""
    return (
        str(row.get("model")),
        str(row.get("dataset")),
        str(row.get("probe")),
        (mitigation not in ("none", BASELINE), mitigation != BASELINE, mitigation),
        str(row.get("train_datasets")),
        row.get("num_virtual_tokens") or 0,
        row.get("lr") or 0,
        (len(str(row.get("layer"))), str(row.get("layer"))),  # layer 5 before layer 10
        row.get("multiplier") or 0,
        row.get("seed") if row.get("seed") is not None else -1,
    )


def study_rows(rows: list[dict]) -> list[dict]:
    """Rows of the study table: every run, plus one untouched-model row per train.py setting."""
    out = [dict(r) for r in rows]
    seen = set()
    for r in rows:
        if r.get("stage") != "after" or not any(k.startswith("before_") for k in r):
            continue
        key = (r["model"], r["dataset"], r["probe"], r["data_seed"])
        if key in seen:
            continue
        seen.add(key)
        base = {k: r.get(k) for k in ("model", "dataset", "probe", "data_seed", "group")}
        base.update(mitigation=BASELINE, stage="before", seed=None, run_dir=r["run_dir"])
        base.update({k[len("before_") :]: v for k, v in r.items() if k.startswith("before_")})
        out.append(base)
    return sorted(out, key=_sort_key)


def fmt(row: dict, key: str) -> str:
    """'0.500 [0.15, 0.85]' for a metric and its interval, as the printed summary shows it; '-' when
    absent."""
    return with_interval(
        row.get(key), row.get(f"{key}_low"), row.get(f"{key}_high"), is_signed(key)
    )


def _varying(rows: list[dict], key: str) -> bool:
    return len({str(r.get(key)) for r in rows}) > 1


def markdown(rows: list[dict], failed: list[dict] | None = None) -> str:
    """The study table (model × mitigation → metrics with intervals and n) as markdown."""
    rows = study_rows(rows)
    metrics = [m for m in METRICS if any(r.get(m) is not None for r in rows)]
    extra = [
        k
        for k in (
            "dataset",
            "probe",
            "train_datasets",
            "num_virtual_tokens",
            "lr",
            "layer",
            "multiplier",
            "strength",
            "persona",
            "seed",
        )  # fmt: skip
        if _varying([r for r in rows if r.get("stage") != "before" and r.get(k) is not None], k)
    ]
    heads = ["model", "mitigation", *extra, *(BY_NAME[m].label for m in metrics), "n"]
    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    for r in rows:
        ns = list(dict.fromkeys(str(r[f"{m}_n"]) for m in metrics if r.get(f"{m}_n") is not None))
        cells = [str(r.get("model")), str(r.get("mitigation"))]
        cells += ["-" if r.get(k) is None else str(r.get(k)) for k in extra]
        cells += [fmt(r, m) for m in metrics]
        cells.append(" / ".join(ns) if ns else "-")
        lines.append("| " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    bootstrapped = " and ".join(
        f"the {BY_NAME[m].label}" for m in METRICS if BY_NAME[m].interval == PAIRED_BOOTSTRAP
    )
    text += (
        f"\nIntervals: Wilson 95% for rates, paired bootstrap 95% for {bootstrapped}. "
        "n: examples behind the alignment / filtered alignment (or flip rate).\n"
    )
    if failed:
        text += f"\n**Failed jobs ({len(failed)})**, no metrics.json:\n\n"
        text += "".join(f"- `{f['run_dir']}`: {f['error']}\n" for f in failed)
    return text


def to_csv(rows: list[dict]) -> str:
    """All rows as CSV: identifying columns first, then metric columns in a stable order."""
    metric_keys = sorted({k for r in rows for k in r} - set(ID_COLUMNS))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=[*ID_COLUMNS, *metric_keys], lineterminator="\n")
    writer.writeheader()
    for r in sorted(rows, key=_sort_key):
        writer.writerow({k: r.get(k) for k in writer.fieldnames})
    return buffer.getvalue()


def _save(fig, path: Path) -> Path:
    """Save a figure atomically as PNG."""
    buffer = io.BytesIO()
    import matplotlib.pyplot as plt

    fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(buffer.getvalue())
    tmp.replace(path)
    return path


ARM_SETTINGS = {
    "num_virtual_tokens": "v",
    "lr": "lr",
    "layer": "L",
    "multiplier": "x",
    "train_datasets": "train ",
}


def arm_settings(rows: list[dict]) -> list[str]:
    """The settings that take more than one value within one mitigation."""
    mitigations = {r.get("mitigation") for r in rows}
    return [
        k
        for k in ARM_SETTINGS
        if any(_varying([r for r in rows if r.get("mitigation") == m], k) for m in mitigations)
    ]


def arm(row: dict, settings: list[str]) -> str:
    """The mitigation with the settings that vary across the sweep: 'prompt_tuning lr0.01 v20'."""
    parts = [str(row.get("mitigation"))]
    parts += [f"{ARM_SETTINGS[k]}{row[k]}" for k in settings if row.get(k) is not None]
    return " ".join(parts)


def _seed(row: dict) -> str:
    return "" if row.get("seed") is None else f" s{row['seed']}"


def plot_alignment(rows: list[dict], path: Path) -> Path | None:
    """Opinion alignment, filtered alignment and flip rate (where measured) by mitigation (x) and
    model (colour), one point per run with its interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = study_rows(rows)
    keys = [k for k in PLOTTED if any(r.get(k) is not None for r in rows)]
    if not keys:
        return None
    fig, axes = plt.subplots(
        1, len(keys), figsize=(5.5 * len(keys), 4), squeeze=False, layout="constrained"
    )
    settings = arm_settings(rows)
    for ax, key in zip(axes[0], keys, strict=True):
        have = [r for r in rows if r.get(key) is not None and not math.isnan(r[key])]
        mitigations = list(dict.fromkeys(arm(r, settings) for r in have))
        models = list(dict.fromkeys(r["model"] for r in have))
        width = 0.8 / max(1, len(models))
        labelled: set[str] = set()
        for j, model in enumerate(models):
            for i, mitigation in enumerate(mitigations):
                cell = [r for r in have if r["model"] == model and arm(r, settings) == mitigation]
                for k, r in enumerate(cell):
                    x = i - 0.4 + width * (j + 0.5) + (k - (len(cell) - 1) / 2) * width * 0.15
                    low, high = r.get(f"{key}_low"), r.get(f"{key}_high")
                    err = (
                        [[max(0.0, r[key] - low)], [max(0.0, high - r[key])]]
                        if low is not None and high is not None
                        else None
                    )
                    ax.errorbar(
                        x, r[key], yerr=err, fmt="o", capsize=3, color=f"C{j}",
                        label=None if model in labelled else model,
                    )  # fmt: skip
                    labelled.add(model)
        ax.set_xticks(range(len(mitigations)), mitigations, rotation=20, ha="right")
        ax.set_ylim(-0.02, 1.02)
        label = BY_NAME[key].label
        ax.set_ylabel(label + (" (wrong opinion)" if key == "alignment_wrong" else ""))
        ax.set_title(f"{label} (95% intervals)")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, path)


def plot_opinion_axes(rows: list[dict], path: Path) -> Path | None:
    """Opinion alignment and filtered alignment by opinion strength (x, weakest first) and persona
    (colour), one point per run with its interval; None unless strength or persona varies."""
    rows = [
        r for r in rows if r.get("strength") is not None and r.get("alignment_wrong") is not None
    ]
    if not rows or not (_varying(rows, "strength") or _varying(rows, "persona")):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in AXES_PLOTTED if any(r.get(k) is not None for r in rows)]
    strengths = [s for s in STRENGTHS if any(r["strength"] == s for r in rows)]
    strengths += sorted({r["strength"] for r in rows} - set(strengths))
    personas = list(dict.fromkeys(str(r["persona"]) for r in rows))
    fig, axes = plt.subplots(
        1, len(keys), figsize=(5.5 * len(keys), 4), squeeze=False, layout="constrained"
    )
    width = 0.8 / max(1, len(personas))
    for ax, key in zip(axes[0], keys, strict=True):
        for j, persona in enumerate(personas):
            cell = [r for r in rows if str(r["persona"]) == persona and r.get(key) is not None]
            xs = [strengths.index(r["strength"]) - 0.4 + width * (j + 0.5) for r in cell]
            ys = [r[key] for r in cell]
            err = [
                [max(0.0, r[key] - (r.get(f"{key}_low") or r[key])) for r in cell],
                [max(0.0, (r.get(f"{key}_high") or r[key]) - r[key]) for r in cell],
            ]
            ax.errorbar(xs, ys, yerr=err, fmt="o", capsize=3, color=f"C{j}", label=persona)
        ax.set_xticks(range(len(strengths)), strengths)
        ax.set_xlabel("opinion strength")
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(f"{BY_NAME[key].label} by strength and persona (95% intervals)")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(title="persona", fontsize=8)
    return _save(fig, path)


def read_curves(run_dir: Path) -> dict[str, list[tuple[float, float]]]:
    """(step, value) series of the train/ and val/ columns of a run's csv/metrics.csv."""
    path = run_dir / "csv" / "metrics.csv"
    if not path.exists():
        return {}
    series: dict[str, list[tuple[float, float]]] = {}
    with open(path, encoding="utf-8") as handle:
        for rec in csv.DictReader(handle):
            step = rec.get("step")
            if not step:
                continue
            for key, value in rec.items():
                if key and key.startswith(("train/", "val/")) and value not in (None, ""):
                    series.setdefault(key, []).append((float(step), float(value)))
    return series


def plot_curves(root: Path, rows: list[dict], path: Path) -> Path | None:
    """Training curves (one panel per logged train/ or val/ metric, one line per run)."""
    curves = {r["run_dir"]: read_curves(root / r["run_dir"]) for r in rows}
    curves = {k: v for k, v in curves.items() if v}
    if not curves:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted({name for c in curves.values() for name in c})
    cols = min(3, len(names))
    nrows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(
        nrows, cols, figsize=(4.5 * cols, 3.2 * nrows), squeeze=False, layout="constrained"
    )
    labels = {r["run_dir"]: f"{r['model']} {r['mitigation']} s{r['seed']}" for r in rows}
    for ax, name in zip(axes.flat, names, strict=False):
        for i, (run, series) in enumerate(sorted(curves.items())):
            points = series.get(name)
            if points:
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, marker=".", color=f"C{i % 10}", label=labels[run])
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    if len(curves) <= 12:
        axes.flat[0].legend(fontsize=7)
    return _save(fig, path)


def report(root: str | Path) -> dict[str, Path]:
    """Write results.csv, results.md and the plots into root; return the written paths."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{str(root)!r} is not a folder; give a multirun or outputs folder.")
    rows = collect(root)
    failed = failures(root)
    if not rows:
        hint = f" {len(failed)} job(s) failed (see their error.txt)." if failed else ""
        raise UserError(
            f"No runs under {str(root)!r}: no folder there holds a metrics.json.{hint} Point the "
            "report at a sweep folder (multirun/<date>/<time>) or at outputs/."
        )
    written = {
        "csv": write_text(root / "results.csv", to_csv(rows)),
        "md": write_text(root / "results.md", markdown(rows, failed)),
    }
    alignment = plot_alignment(rows, root / "alignment.png")
    if alignment:
        written["alignment"] = alignment
    axes = plot_opinion_axes(rows, root / "opinion_strength.png")
    if axes:
        written["opinion_strength"] = axes
    studied = study_rows(rows)
    settings = arm_settings(studied)
    tradeoffs = plot_tradeoff(
        studied, lambda r: arm(r, settings) + _seed(r), root / "tradeoff.png", _save
    )
    if tradeoffs:
        written["tradeoff"] = tradeoffs
    scan = plot_steering(studied, root / "steering.png", _save)
    if scan:
        written["steering"] = scan
    curves = plot_curves(root, rows, root / "training_curves.png")
    if curves:
        written["curves"] = curves
    return written


def main(argv: list[str] | None = None) -> int:
    """CLI: tabulate and plot every run under DIR."""
    parser = argparse.ArgumentParser(prog="python -m sycophancy.report", description=__doc__)
    parser.add_argument("dir", help="a multirun sweep folder or an outputs folder")
    args = parser.parse_args(argv)
    try:
        written = report(args.dir)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    root = Path(args.dir)
    print((root / "results.md").read_text(encoding="utf-8"))
    print("wrote " + ", ".join(str(p) for p in written.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
