"""What each arm of a sweep buys and costs against the untouched model, and the steering scan:
the numbers (pure) and their plots."""

from __future__ import annotations

import math
from pathlib import Path

from sycophancy.metrics.stats import newcombe_diff
from sycophancy.metrics.table import BY_NAME

BASELINES = ("none", "none (before training)")
GAIN = "alignment_wrong_filtered"  # lower is better: the reduction is the gain
COSTS = {"acc_no_opinion": -1, "contrarian_rate": +1}  # cost = sign * (arm - untouched)
TARGETS = {"acc_no_opinion": 0.03, "contrarian_rate": 0.05}  # the largest acceptable costs
STEERING_PANELS = ("alignment_wrong_filtered", "acc_no_opinion", "contrarian_rate")


def _key(row: dict) -> tuple:
    return tuple(str(row.get(k)) for k in ("model", "dataset", "probe", "data_seed"))


def _metric(row: dict, key: str, prefix: str = "") -> tuple[float, list[float]] | None:
    """(value, [low, high]) of a metric in a row, or None where it or its interval is missing."""
    value = row.get(f"{prefix}{key}")
    low, high = row.get(f"{prefix}{key}_low"), row.get(f"{prefix}{key}_high")
    if value is None or low is None or high is None or math.isnan(value):
        return None
    return float(value), [float(low), float(high)]


def baselines(rows: list[dict]) -> dict[tuple, dict]:
    """The untouched model's row per (model, dataset, probe, data_seed): an evaluate.py `none` run,
    else a train.py run's own before-training row."""
    out: dict[tuple, dict] = {}
    for name in reversed(BASELINES):  # `none` overrides `none (before training)`
        for row in rows:
            if row.get("mitigation") == name:
                out[_key(row)] = row
    return out


def tradeoff(row: dict, base: dict) -> dict | None:
    """An arm's reduction in filtered alignment and its costs against the untouched model, each with
    a Newcombe interval; a train.py arm is compared with its own before-training measurement."""
    own = any(k.startswith("before_") for k in row)
    prefix, base = ("before_", row) if own else ("", base)
    gain_arm, gain_base = _metric(row, GAIN), _metric(base, GAIN, prefix)
    if gain_arm is None or gain_base is None:
        return None
    out = {"reduction": gain_base[0] - gain_arm[0]}
    out["reduction_ci"] = newcombe_diff(gain_base[0], gain_base[1], gain_arm[0], gain_arm[1])
    for key, sign in COSTS.items():
        arm, untouched = _metric(row, key), _metric(base, key, prefix)
        if arm is None or untouched is None:
            continue
        first, second = (arm, untouched) if sign > 0 else (untouched, arm)
        out[key] = first[0] - second[0]
        out[f"{key}_ci"] = newcombe_diff(first[0], first[1], second[0], second[1])
    return out


def tradeoff_rows(rows: list[dict], label) -> list[dict]:
    """One trade-off point per arm run (untouched rows left out), labelled by `label(row)`."""
    base = baselines(rows)
    points = []
    for row in rows:
        if row.get("mitigation") in BASELINES or row.get("stage") == "before":
            continue
        point = tradeoff(row, base.get(_key(row), {}))
        if point is not None:
            points.append({"arm": label(row), "mitigation": row.get("mitigation"), **point})
    return points


def _errorbar(ax, x: float, x_ci, y: float, y_ci, **kwargs) -> None:
    xerr = [[max(0.0, x - x_ci[0])], [max(0.0, x_ci[1] - x)]]
    yerr = [[max(0.0, y - y_ci[0])], [max(0.0, y_ci[1] - y)]]
    ax.errorbar(x, y, xerr=xerr, yerr=yerr, fmt="o", capsize=2, elinewidth=0.8, **kwargs)


def plot_tradeoff(rows: list[dict], label, path: Path, save) -> Path | None:
    """Reduction in filtered alignment (y) against each cost (x: accuracy without opinion lost,
    contrarian rate gained), one point per arm run with 95% intervals on both axes."""
    points = tradeoff_rows(rows, label)
    if not points:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), squeeze=False, layout="constrained")
    mitigations = list(dict.fromkeys(p["mitigation"] for p in points))
    for ax, key in zip(axes[0], COSTS, strict=True):
        have = [p for p in points if key in p]
        labelled: set[str] = set()
        for p in have:
            colour = f"C{mitigations.index(p['mitigation']) % 10}"
            name = p["mitigation"]
            _errorbar(
                ax, p[key], p[f"{key}_ci"], p["reduction"], p["reduction_ci"], color=colour,
                label=None if name in labelled else name,
            )  # fmt: skip
            labelled.add(name)
            ax.annotate(p["arm"], (p[key], p["reduction"]), fontsize=6, alpha=0.7,
                        xytext=(3, 3), textcoords="offset points")  # fmt: skip
        ax.axhline(0, color="grey", lw=0.8)
        ax.axvline(0, color="grey", lw=0.8)
        ax.axvline(TARGETS[key], color="grey", lw=0.8, ls="--")
        what = "lost" if COSTS[key] < 0 else "gained"
        ax.set_xlabel(f"{BY_NAME[key].label} {what} (dashed: {TARGETS[key]:.2f})")
        ax.set_ylabel(f"reduction in {BY_NAME[GAIN].label}")
        ax.set_title("gain vs cost against the untouched model (95% intervals)")
        ax.grid(alpha=0.3)
        if have:
            ax.legend(fontsize=7)
    return save(fig, path)


def steering_rows(rows: list[dict]) -> list[dict]:
    """The steering arms (a layer and a multiplier), after training or evaluated."""
    return [
        r for r in rows
        if r.get("layer") is not None and r.get("multiplier") is not None and r.get("stage") != "before"
    ]  # fmt: skip


def plot_steering(rows: list[dict], path: Path, save) -> Path | None:
    """Filtered alignment, accuracy without opinion and contrarian rate against the multiplier, one
    colour per layer: every run with its interval, a line through the mean over seeds, and the
    untouched model dashed."""
    arms = steering_rows(rows)
    if not arms:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    base = baselines(rows)
    keys = [k for k in STEERING_PANELS if any(r.get(k) is not None for r in arms)]
    fig, axes = plt.subplots(
        1, len(keys), figsize=(5 * len(keys), 4), squeeze=False, layout="constrained"
    )
    layers = sorted({str(r["layer"]) for r in arms}, key=lambda s: (len(s), s))
    for ax, key in zip(axes[0], keys, strict=True):
        for j, layer in enumerate(layers):
            mine = [r for r in arms if str(r["layer"]) == layer and _metric(r, key) is not None]
            xs = sorted({r["multiplier"] for r in mine})
            for r in mine:
                value, (low, high) = _metric(r, key)
                ax.errorbar(
                    r["multiplier"], value, yerr=[[value - low], [high - value]], fmt="o",
                    ms=3, capsize=2, alpha=0.5, color=f"C{j}",
                )  # fmt: skip
            means = [
                sum(r[key] for r in mine if r["multiplier"] == x)
                / sum(1 for r in mine if r["multiplier"] == x)
                for x in xs
            ]
            ax.plot(xs, means, "-", color=f"C{j}", label=f"layer {layer}")
        untouched = set()
        for row in arms:
            own = _metric(row, key, "before_")
            found = own or _metric(base.get(_key(row), {}), key)
            if found is not None:
                untouched.add(round(found[0], 6))
        for value in untouched:
            ax.axhline(value, color="grey", ls="--", lw=0.8)
        ax.set_xlabel("multiplier")
        ax.set_ylabel(BY_NAME[key].label)
        ax.set_title(f"{BY_NAME[key].label} (dashed: untouched model)")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return save(fig, path)
